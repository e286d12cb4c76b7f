"""`python main.py evaluate`: PCP and PDJ of a model cascade, or of the ground-truth oracle, on a
dataset split (the paper's Sec. 4.1 metrics, see :mod:`tools.eval.metrics`).

Estimators:
- the model cascade (``--weights DIR`` or ``--model NAME``, default ``weights/<dataset>``): every
  stage's poses are scored; b0 per example comes from :func:`tools.data.person_boxes.example_b0`
  (FLIC: the detected face enlarged by the model's scaler; LSP: the full image, the paper's
  protocol, or with ``--b0 face`` the detected face enlarged by the model's full-body scaler, as
  the video command and the app take it).
- the ground-truth oracle (``--oracle``): returns the labels themselves, optionally with seeded
  Gaussian noise of ``--oracle-noise`` pixels per coordinate; a check of the metrics with known
  values. It never decodes an image.

Prints a PDJ@0.2 table per joint and a PCP table per limb (one column per stage) naming the
dataset, split and number of examples; ``--json`` writes every number (PDJ@0.1, @0.2, the PDJ
curves over [0, 0.5], PCP per limb) per stage, ``--plot`` the PDJ curves as a PNG.

Module-level imports stay light (argparse only): ``main.py --help`` imports every command.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from deeppose.engine.cli_args import (
    WeightsError,
    add_backend,
    add_flip,
    add_int8,
    add_stages,
    add_weights,
    int8_problem,
    output_problem,
    positive_int,
    resolve_weights,
)

TABLE_PDJ = 0.2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the evaluate command's arguments to its sub-parser."""
    parser.add_argument("--dataset", required=True, choices=("flic", "lsp", "body"),
                        help="dataset to evaluate on: flic, lsp, or body (psi v2's: FLIC's and LSP's split "
                        "together in the union of their joints, each with its own b0 protocol, as the trainer "
                        "validates; for --model body's --write-manifest and its int8 record)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="dataset folder (default: ../shared/data/<dataset> or $DEEPPOSE_DATA/<dataset>)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test", "trainval"),
                        help="dataset split (default: val)")
    add_weights(parser, default_text="the --dataset's, weights/<dataset>")
    parser.add_argument("--b0", choices=("auto", "frame", "face"), default="auto",
                        help="b0 per example: auto (default: FLIC the face enlarged by the model's scaler, LSP the "
                        "full image, as in the paper), frame (the full image) or face (the labelled person's "
                        "detected face enlarged by the model's scaler, the full image where it is missed; the b0 "
                        "of the video command and the app)")
    add_stages(parser, "evaluate")
    add_backend(parser)
    add_int8(parser, default_text="the float model; with --int8 and --write-manifest the int8 figures go to the "
             "manifest's int8 record, which lets the other commands run those stages in int8 by default")
    parser.add_argument("--int8-stages", type=_stage_list, metavar="S", default=None,
                        help="with --int8: only these stages run their int8 copies, one number or several with commas "
                        "(e.g. 3 or 2,3; default: all)")
    add_flip(parser, default="off")
    parser.add_argument("--missed-face", choices=("frame", "joints"), default="frame",
                        help="FLIC b0 where the face detector missed the person: the full image (default; "
                             "no ground truth used) or the face implied by the labelled eyes and nose")
    parser.add_argument("--turn", type=int, choices=(0, 90, 180, 270), default=0, metavar="DEG",
                        help="turn every image and its ground truth counterclockwise by 0, 90, 180 or 270 degrees "
                             "(people lying or upside down; b0 is then the full image) (default: 0)")
    parser.add_argument("--scaler", metavar="FILE", default=None,
                        help="a fit-scaler JSON that turns the face into b0 instead of the model's (e.g. FLIC's "
                             "upper-body scaler for the body model, which trained on FLIC with it; default: the "
                             "model's)")
    parser.add_argument("--face-confidence", type=float, metavar="P", default=0.3,
                        help="FLIC: face detector threshold for b0 (default 0.3; only the annotated person's "
                             "face, matched by its labelled eyes and nose, is used, so a lower threshold than "
                             "the app's 0.5 finds more people at no cost)")
    parser.add_argument("--limit", type=positive_int, metavar="N", default=None,
                        help="evaluate only the first N examples of the split (body: of each dataset's)")
    parser.add_argument("--write-manifest", action="store_true",
                        help="store the per-stage PDJ@0.1/0.2 and PCP of this run as the model's validation "
                             "metrics (manifest 'val_metrics'); needs the whole val split")
    parser.add_argument("--json", metavar="FILE", default=None, help="write all numbers to this JSON file")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="write the PDJ curves to this PNG")
    parser.add_argument("--oracle", action="store_true",
                        help="evaluate the ground truth itself (a check of the metrics; loads no image)")
    parser.add_argument("--oracle-noise", type=float, metavar="PX", default=0.0,
                        help="with --oracle: add Gaussian noise of this standard deviation in pixels "
                             "to each coordinate (implies --oracle)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the oracle noise (default: 0)")
    parser.add_argument("--pcp-threshold", type=float, default=0.5, metavar="F",
                        help="PCP threshold as a fraction of the limb length (default: 0.5, the paper's)")


# ------------------------------------------------------------------------------ estimators

def oracle_poses(gt, noise_px: float = 0.0, seed: int = 0):
    """The ground-truth oracle: ``gt`` itself, plus optional Gaussian noise.

    Args:
        gt: (N, k, 2) ground-truth poses in pixels (NaN = unlabelled, kept NaN).
        noise_px: standard deviation of the noise added to every coordinate, pixels.
        seed: seed of numpy's default generator (same seed, same poses).
    Returns:
        (1, N, k, 2) stage poses (one "stage") in pixels.
    """
    import numpy as np

    gt = np.asarray(gt, dtype=np.float64)
    pred = gt.copy()
    if noise_px > 0:
        pred += np.random.default_rng(seed).normal(0.0, noise_px, size=gt.shape)
    return pred[None]


def cascade_poses(dataset, cascade, b0, stages: int | None = None, progress: bool = True, load_image=None,
                  extras: dict | None = None, angles=None):
    """Run the cascade on every example of ``dataset``, each image decoded once.

    Examples sharing one image (FLIC) go through the cascade together, as the P persons of one
    frame. An example whose b0 is not finite gets NaN poses (scored as wrong).

    Args:
        dataset: a :class:`tools.data.datasets.PoseDataset`.
        cascade: an :class:`engine.cascade.Cascade`.
        b0: (N, 4) person boxes (cx, cy, w, h) in pixels, one per example.
        stages: stages to run (default all).
        progress: show a tqdm bar over examples (on a terminal).
        load_image: image path -> (H, W, 3) BGR array (default: decode the file; the trainer
            passes its in-memory images).
        extras: a dict to fill with psi v2's outputs of every example, "confidence" (N, k) and
            "presence" (N,) (:class:`engine.cascade.CascadeResult`; NaN for psi v1).
        angles: (N,) roll of each b0, radians (the :func:`engine.geometry.crop_boxes`
            convention), or None: upright.
    Returns:
        (stage_poses (S, N, k, 2) pixels in the cascade's skeleton (k of the model's joints),
        stage_seconds (S,) total wall time per stage).
    Raises:
        tools.data.datasets.DatasetError: an image is missing or cannot be decoded.
    """
    import numpy as np
    from tqdm import tqdm

    if load_image is None:
        from deeppose.tools.data.datasets import load_image

    n = len(dataset.examples)
    s_total = cascade.num_stages if stages is None else int(stages)
    out = np.full((s_total, n, cascade.skeleton.k, 2), np.nan)
    seconds = np.zeros(s_total)
    confidence, presence = np.full((n, cascade.skeleton.k), np.nan), np.full(n, np.nan)
    by_image: dict[Path, list[int]] = {}
    for i, e in enumerate(dataset.examples):
        by_image.setdefault(e.image_path, []).append(i)
    with tqdm(total=n, unit="example", desc=f"{dataset.name} {dataset.split}", disable=not progress or None,
              file=sys.stderr) as bar:
        for path, idx in by_image.items():
            ok = [i for i in idx if np.isfinite(b0[i]).all()]
            if ok:
                result = cascade.run(load_image(path), b0[ok], stages=s_total,
                                     angles=None if angles is None else np.asarray(angles)[ok])
                out[:, ok] = result.stage_poses
                seconds += result.stage_seconds
                confidence[ok], presence[ok] = result.confidence, result.presence
            bar.update(len(idx))
    if extras is not None:
        extras.update(confidence=confidence, presence=presence)
    return out, seconds


def presence_negatives(dataset, b0):
    """Boxes that hold nobody, two per example, for the presence head's ROC: b0 moved off the
    person by 1.5 of its sides (in a direction that turns with the example's index), and a box a
    third of b0's size on one of its labelled joints (a box on one limb). Returns (2N, 4) boxes
    and the (2N,) example index of each."""
    import numpy as np

    boxes, owner = [], []
    for i, (e, b) in enumerate(zip(dataset.examples, b0)):
        if not np.isfinite(b).all():
            continue
        a = 2.399963 * i   # the golden angle: directions spread evenly over the examples
        boxes.append([b[0] + 1.5 * b[2] * np.cos(a), b[1] + 1.5 * b[3] * np.sin(a), b[2], b[3]])
        owner.append(i)
        labelled = np.flatnonzero(np.isfinite(e.pose).all(1))
        if len(labelled):
            j = e.pose[labelled[i % len(labelled)]]
            boxes.append([j[0], j[1], b[2] / 3, b[3] / 3])
            owner.append(i)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(owner, dtype=np.int64)


def presence_auroc(dataset, cascade, b0, presence, load_image=None) -> float:
    """ROC AUC of stage 1's presence on the examples' b0 (``presence`` (N,), positives) against
    :func:`presence_negatives` (negatives); NaN for a model without a presence head."""
    import numpy as np

    from deeppose.tools.eval.metrics import auroc

    if not np.isfinite(presence).any():
        return float("nan")
    if load_image is None:
        from deeppose.tools.data.datasets import load_image
    boxes, owner = presence_negatives(dataset, b0)
    negatives = np.full(len(boxes), np.nan)
    for i in np.unique(owner):
        sel = owner == i
        negatives[sel] = cascade.run(load_image(dataset.examples[i].image_path), boxes[sel], stages=1).presence
    scores = np.concatenate([presence, negatives])
    return auroc(scores, np.r_[np.ones(len(presence), bool), np.zeros(len(negatives), bool)])


# ------------------------------------------------------------------------------ metrics

CONFIDENCE_FRACTION = 0.2
"""PDJ fraction that defines a right joint for the confidence AUROC (issue 24: PDJ@0.2)."""

def evaluate_poses(stage_poses, gt, skeleton, stage_names: list[str], pcp_threshold: float = 0.5) -> list[dict]:
    """:func:`tools.eval.metrics.stage_metrics` for each stage; ``stage_poses`` is (S, N, k, 2) pixels."""
    from deeppose.tools.eval.metrics import stage_metrics

    return [{"stage": name, **stage_metrics(p, gt, skeleton, pcp_threshold)}
            for name, p in zip(stage_names, stage_poses)]


# ------------------------------------------------------------------------------ output

def _fmt(v: float) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"


def format_report(report: dict) -> str:
    """The printed tables: PDJ@0.2 per joint and PCP per limb, one column per stage."""
    stages = report["stages"]
    head = report["header"]
    names = [s["stage"] for s in stages]
    w = max(12, *(len(j) for j in report["joints"]), *(len(l) for l in report["limbs"]))
    cols = "".join(f" {n[-8:]:>8}" for n in names)
    lines = [head, "",
             f"PDJ@{TABLE_PDJ:g} (detected: within {TABLE_PDJ:g} x diam of the truth; diam = shoulder "
             f"to opposite hip) on {report['dataset']} {report['split']}, {report['num_examples']} examples",
             f"{'joint':<{w}} {'n':>6}{cols}"]
    key = f"pdj@{TABLE_PDJ:g}"
    for j in report["joints"]:
        vals = "".join(f"   {_fmt(s[key]['per_joint'][j])}" for s in stages)
        lines.append(f"{j:<{w}} {stages[0]['pdj_counts'][j]:>6}{vals}")
    lines.append(f"{'mean':<{w}} {'':>6}" + "".join(f"   {_fmt(s[key]['mean'])}" for s in stages))
    lines.append(f"{'mean PDJ@0.1':<{w}} {'':>6}" + "".join(f"   {_fmt(s['pdj@0.1']['mean'])}" for s in stages))
    thr = stages[0]["pcp"]["threshold"]
    lines += ["",
              f"PCP@{thr:g} (correct: both end points within {thr:g} x limb length of the truth) on "
              f"{report['dataset']} {report['split']}, {report['num_examples']} examples",
              f"{'limb':<{w}} {'n':>6}{cols}"]
    for l in report["limbs"]:
        vals = "".join(f"   {_fmt(s['pcp']['per_limb'][l])}" for s in stages)
        lines.append(f"{l:<{w}} {stages[0]['pcp']['counts'][l]:>6}{vals}")
    lines.append(f"{'mean':<{w}} {'':>6}" + "".join(f"   {_fmt(s['pcp']['mean'])}" for s in stages))
    return "\n".join(lines)


def _json_safe(x):
    """NaN/inf -> None (strict JSON), numpy scalars -> Python numbers, recursively."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def write_json(report: dict, path: str | Path) -> Path:
    """Write ``report`` as strict JSON (NaN -> null); returns the path."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(report), indent=1, allow_nan=False) + "\n")
    return path


def plot_pdj_curves(report: dict, path: str | Path) -> Path:
    """PNG of PDJ curves: one panel per joint part (left and right pooled) plus the mean over
    joints, one line per stage; x = fraction of diam in [0, 0.5], y = detection rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stages = report["stages"]
    parts = list(stages[0]["pdj_curve"]["per_part"]) + ["mean over joints"]
    ncols = min(4, len(parts))
    nrows = math.ceil(len(parts) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for n, (ax, part) in enumerate(zip(axes, parts)):
        for s in stages:
            curve = s["pdj_curve"]
            y = curve["mean"] if part == "mean over joints" else curve["per_part"][part]
            ax.plot(curve["fractions"], [float("nan") if v is None else v for v in y], label=f"{s['stage']}")
        ax.set_title(part)
        ax.set_xlim(0, curve["fractions"][-1])
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if n + ncols >= len(parts):
            ax.set_xlabel("fraction of diam")
        if n % ncols == 0:
            ax.set_ylabel("detection rate")
    for ax in axes[len(parts):]:
        ax.set_visible(False)
    axes[0].legend(loc="lower right", fontsize="small")
    fig.suptitle(f"PDJ, {report['estimator_label']}, {report['dataset']} {report['split']} "
                 f"({report['num_examples']} examples)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# ------------------------------------------------------------------------------ command

def _error(msg: str) -> int:
    print(f"evaluate: error: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Evaluate and print; returns 0, or 2 after a one-line error (bad data, model or options)."""
    from deeppose.engine.model import ModelError
    from deeppose.tools.data.datasets import DatasetError

    try:
        return _run(args)
    except (DatasetError, ModelError) as e:
        return _error(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _run(args) -> int:
    import dataclasses
    import time
    from collections import Counter

    import numpy as np

    from deeppose.tools.data.datasets import load_dataset

    oracle = args.oracle or args.oracle_noise > 0
    if args.oracle_noise < 0:
        return _error(f"--oracle-noise must be >= 0, got {args.oracle_noise}")
    if oracle and (args.weights or args.model or args.stages):
        return _error("--oracle evaluates the ground truth: it takes no --weights, --model or --stages")
    for path, what in ((args.json, "--json file"), (args.plot, "--plot image")):
        problem = output_problem(path, what) if path else None
        if problem:   # before the run, not after it
            return _error(problem)
    if int8_problem(args):
        return _error(int8_problem(args))
    if args.int8_stages and not args.int8:
        return _error("--int8-stages picks the stages of --int8; give --int8 too")
    if args.write_manifest and (oracle or args.split != "val" or args.limit is not None or args.stages is not None
                                or args.b0 != "auto"):
        return _error("--write-manifest records a model's metrics on the whole val split: "
                      "use it with --split val, all stages, no --limit, no --oracle and the protocol's b0 (--b0 auto)")

    body_b0 = None
    if args.dataset == "body":   # the trainer's val protocol: each part's own b0, computed with the examples
        if args.data or args.turn or args.b0 != "auto" or args.scaler or args.missed_face != "frame" or oracle:
            return _error("--dataset body takes its data, b0 and scaler from the training protocol: give no --data, "
                          "--turn, --b0, --scaler, --missed-face or --oracle")
        from deeppose.tools.train.splits import body_split

        body = body_split(args.split, args.limit)   # --limit: the first N of each part
        dataset, body_b0 = body.ds, (np.asarray(body.b0, dtype=np.float64), list(body.sources))
        limited = args.limit is not None
    else:
        dataset = load_dataset(args.dataset, args.data, args.split)
        limited = args.limit is not None and args.limit < len(dataset.examples)
    if limited and body_b0 is None:
        dataset = dataclasses.replace(dataset, examples=dataset.examples[:args.limit])
    if args.turn and (args.b0 == "face" or args.write_manifest):
        return _error("--turn evaluates turned images with the full image as b0: it takes no --b0 face or --write-manifest")
    if args.turn:
        from deeppose.tools.data.datasets import turn_dataset

        dataset = turn_dataset(dataset, args.turn)
    if not dataset.examples:
        return _error(f"{args.dataset} {args.split} split has no examples")
    skeleton = dataset.skeleton
    gt = dataset.poses()
    report: dict = {
        "dataset": dataset.name, "split": dataset.split, "data_root": str(dataset.root),
        "num_examples": len(dataset.examples), "limit": args.limit if limited else None, "turn": args.turn,
        "joints": list(skeleton.joints), "limbs": [l.name for l in skeleton.limbs],
        "pdj_definition": "joint detected when |pred - gt| <= fraction * diam(gt), diam = shoulder to opposite hip",
        "pcp_definition": "limb correct when both predicted end points are within threshold * gt limb length",
    }

    if oracle:
        stage_poses = oracle_poses(gt, args.oracle_noise, args.seed)
        names = ["oracle"]
        label = "ground-truth oracle" + (f" + {args.oracle_noise:g} px noise (seed {args.seed})"
                                         if args.oracle_noise > 0 else "")
        report.update(estimator="oracle", oracle_noise_px=args.oracle_noise, seed=args.seed)
    else:
        from deeppose.engine.backends import load_cascade
        from deeppose.engine.model import ModelError

        try:
            weights = resolve_weights(args.weights, args.model, default=args.dataset)
        except WeightsError as e:
            return _error(str(e))
        int8 = (args.int8_stages or True) if args.int8 else False
        cascade, info = load_cascade(weights, backend=args.backend, int8=int8)
        cascade.flip = args.flip
        model_joints = list(info.skeleton.joints)
        if not set(skeleton.joints) <= set(model_joints):
            raise ModelError(f"model {weights} regresses {info.skeleton.name} joints, cannot evaluate on {skeleton.name}")
        columns = [model_joints.index(j) for j in skeleton.joints]   # the dataset's joints among the model's
        if args.write_manifest and info.skeleton.name != skeleton.name:
            return _error(f"--write-manifest: model {weights} regresses {info.skeleton.name} joints; its val metrics "
                          f"are not {skeleton.name}'s alone")
        if args.stages is not None and args.stages > cascade.num_stages:
            return _error(f"--stages {args.stages}: model {weights} has {cascade.num_stages} stages")
        from deeppose.engine.detection.faces import DetectorError, resolve_face_runtime
        from deeppose.tools.data.person_boxes import example_b0

        if body_b0 is not None:   # computed with the examples, by the training protocol
            mode = "body"
        else:
            mode = args.b0 if args.b0 != "auto" else ("frame" if skeleton.name == "lsp" or args.turn else "face")
        scaler = info.scaler if mode == "face" else None
        if mode == "face" and args.scaler:
            try:
                scaler = json.loads(Path(args.scaler).read_text())
            except (OSError, ValueError) as e:
                return _error(f"cannot read --scaler {args.scaler}: {e}")
        if mode == "face" and scaler is None:
            return _error(f"--b0 face: model {weights} has no face scaler")
        try:
            b0, sources = body_b0 or example_b0(dataset, scaler, missed=args.missed_face,
                                                min_confidence=args.face_confidence if scaler else None)
        except (DetectorError, ValueError) as e:
            return _error(f"cannot compute b0: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        b0 = np.asarray(b0, dtype=np.float64)
        if b0.shape != (len(dataset.examples), 4):
            return _error(f"example_b0 returned boxes of shape {b0.shape}, expected ({len(dataset.examples)}, 4)")
        t = time.perf_counter()
        load = None
        if args.turn:
            from deeppose.tools.data.datasets import load_image, turn_image

            def load(path):
                return turn_image(load_image(path), args.turn)
        extras: dict = {}
        stage_poses, seconds = cascade_poses(dataset, cascade, b0, args.stages, load_image=load, extras=extras)
        stage_poses = stage_poses[:, :, columns]
        if np.isfinite(extras["presence"]).any():   # psi v2: how well its confidence and presence tell right from wrong
            from deeppose.tools.eval.metrics import confidence_auroc

            report["confidence_auroc"] = confidence_auroc(extras["confidence"][:, columns], stage_poses[-1], gt,
                                                          skeleton, CONFIDENCE_FRACTION)
            report["presence_auroc"] = presence_auroc(dataset, cascade, b0, extras["presence"], load)
        wall = time.perf_counter() - t
        names = [f"stage {s + 1}" for s in range(len(stage_poses))]
        from deeppose.engine.backends import describe_regressors
        runtime = describe_regressors(cascade.regressors, reason=False)
        label = f"model {weights} ({info.manifest.name or '?'}), {runtime}"
        report.update(estimator="cascade", weights=str(weights), model_name=info.manifest.name,
                      backend=cascade.regressors[0].name, flip=args.flip, b0_sources=dict(Counter(sources)),
                      face_confidence=args.face_confidence if scaler else None,
                      face_runtime=resolve_face_runtime() if scaler else None,
                      stage_ms_per_example=[1000.0 * s / len(dataset.examples) for s in seconds],
                      wall_seconds=wall)

    report["estimator_label"] = label
    report["stages"] = evaluate_poses(stage_poses, gt, skeleton, names, args.pcp_threshold)
    head = f"{dataset.name} {dataset.split} split" + (f" turned {args.turn} degrees" if args.turn else "")
    head += f" ({len(dataset.examples)} examples"
    if limited:
        head += f", first {args.limit} of each dataset only)" if body_b0 is not None else f", first {args.limit} only)"
    else:
        head += ")"
    head += f": {label}"
    if report.get("b0_sources"):
        head += "; b0 from " + ", ".join(f"{k} {v}" for k, v in sorted(report["b0_sources"].items()))
    report["header"] = head
    print(format_report(report), flush=True)
    if "confidence_auroc" in report:
        print(f"\nconfidence AUROC (a joint within PDJ@{CONFIDENCE_FRACTION:g} or not, last stage): "
              f"{_fmt(report['confidence_auroc']).strip()}; presence ROC AUC (b0 against boxes off the person "
              f"or on one limb): {_fmt(report['presence_auroc']).strip()}", flush=True)
    try:
        if args.json:
            print(f"wrote {write_json(report, args.json)}")
        if args.plot:
            print(f"wrote {plot_pdj_curves(report, args.plot)}")
        if args.write_manifest:
            print(f"wrote {write_manifest_metrics(weights, report, cascade.regressors)}")
    except OSError as e:  # the table above is already printed
        return _error(f"cannot write output: {e}")
    return 0


def _stage_list(text: str) -> list[int]:
    """argparse type of --int8-stages: "3" or "2,3" -> [3] / [2, 3] (stage numbers >= 1)."""
    try:
        stages = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        stages = []
    if not stages or min(stages) < 1:
        raise argparse.ArgumentTypeError(f"expected stage numbers such as 3 or 2,3, got {text!r}")
    return stages


def write_manifest_metrics(weights: Path, report: dict, regressors: list) -> Path:
    """Store a val evaluation in the model's manifest (:func:`tools.eval.metrics.record_val_metrics`):
    per stage PDJ@0.1 and @0.2 per joint with their means, PCP per limb with its mean, plus how
    it was measured. Measured with int8 copies (ONNX Runtime ``regressors`` whose ``int8`` is
    set), it is the int8 record instead, its protocol naming the stage checkpoints and the int8
    copies' calibration caches, which :func:`engine.backends.onnxruntime_backend.int8_record`
    checks."""
    from deeppose.engine.backends import int8_stage_numbers
    from deeppose.tools.eval.metrics import record_val_metrics, val_metrics_entry

    metrics = {f"stage{i}": val_metrics_entry(st) for i, st in enumerate(report["stages"], start=1)}
    protocol = {"command": "main.py evaluate --split val --write-manifest", "split": report["split"],
                "examples": report["num_examples"], "b0_sources": report.get("b0_sources"),
                "backend": report.get("backend"), "face_confidence": report.get("face_confidence"),
                "face_runtime": report.get("face_runtime"), "flip": report.get("flip")}
    int8 = int8_stage_numbers(regressors)
    if not int8:
        return record_val_metrics(weights, metrics, protocol)
    protocol.update(command=f"main.py evaluate --split val --int8 --int8-stages {','.join(map(str, int8))} --write-manifest",
                    checkpoint_sha256=[r.metadata.get("checkpoint_sha256") for r in regressors],
                    calibration_sha256=[r.metadata.get("calibration_sha256") for r in regressors],
                    quantization="int8 static QDQ, per-channel weights, uint8 activations, MinMax ranges of the "
                    "stageN.int8-calibration.json caches")
    return record_val_metrics(weights, metrics, protocol, int8_stages=int8)
