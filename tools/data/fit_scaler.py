"""``python main.py fit-scaler``: fit the face-box scaler that turns a detected face into b0.

The paper's FLIC protocol (Sec. 4.1): b0 is the detected face box enlarged by a fixed scaler,
fitted on the training data so that the enlarged box contains all labelled joints. Fitted on the
**train** split only (never val or test).

``--dataset lsp`` fits the full-body scaler of the LSP model on the LSP training images whose
face is found (matched to the labelled neck and head top,
:func:`tools.data.person_boxes.match_head_faces`). The LSP model is trained and evaluated with the
full image as b0 (the paper's LSP protocol); the scaler gives it b0 in video and the app, where
frames are not cropped around one person. It is written to ``weights/lsp/scaler.json`` and,
when that folder already holds an LSP model, into its manifest's "scaler".

Two fits (``--fit``):

- ``coverage`` (FLIC's default, steps 1-4 below): the least-area box holding all joints of 99%
  of the persons, for models trained on that b0.
- ``image`` (LSP's default): the b0 the LSP model is trained on, predicted from the face: the
  medians over the matched persons of (image centre - face centre) / s and image size / s. LSP
  images are tight crops of 7.3 x 13.4 face sizes (median), the coverage box 17.3 x 20.4 (the
  acrobats' limbs reach out in every direction); on the 57 LSP val persons whose face is found,
  a stage-1 model trained on full images scored PCP@0.5 0.302 with this box, 0.137 with the
  coverage box and 0.395 with the image itself (which video frames do not give).

Fit, in units of the face size s = sqrt(w_f * h_f) (engine.detection.persons.FaceScaler):

1. Detect faces (BlazeFace, cached per image, see tools.data.person_boxes) and match each training
   example to its face (tools.data.person_boxes.match_faces). Examples whose face was not found take
   no part in the fit.
2. For each matched example, the extents its box must reach to hold every labelled joint:
   L = min_j (x_j - face_cx) / s, R = max_j (x_j - face_cx) / s, and T, B likewise in y.
3. Pick the box [a, b] x [c, d] (face units, relative to the face centre) of least area
   (b - a)(d - c) holding the joints of at least ``coverage`` of the matched examples
   (a <= L, b >= R, c <= T, d >= B). Least area because a smaller b0 gives the network more
   pixels per joint. Solved by greedy peeling: start from the box holding every example, then
   drop, one at a time, the example whose removal shrinks the area most (only an example that
   is extreme on some side can shrink it), until dropping one more would fall below the target.
   On FLIC train this gives a smaller box than cutting equal per-side quantiles at the same
   joint coverage, because the four sides' tails are of very different lengths.
4. offset = ((a + b) / 2, (c + d) / 2), scale = (b - a, d - c).

Also fitted, for training examples whose face the detector missed (tools.data.person_boxes.example_b0,
source "joints"): the face box implied by the labelled eyes and nose, see :func:`fit_joints_face`
(FLIC), or by the labelled neck and head top, see :func:`tools.data.person_boxes.fit_head_face` (LSP).
"""
from __future__ import annotations

import math
import sys

COVERAGE = 0.99
EPS = 1e-6  # face units added to each side so that float rounding never drops an extreme example


def configure(parser):
    """Add this command's arguments to its argparse sub-parser."""
    parser.add_argument("--dataset", default="flic", choices=("flic", "lsp"),
                        help="fit on FLIC train (the upper-body model's scaler, default) or LSP train (the "
                        "full-body model's)")
    parser.add_argument("--data", default=None, metavar="DIR", help="dataset folder; "
                        "default ../shared/data/<dataset> or $DEEPPOSE_DATA/<dataset>")
    parser.add_argument("--face-model", default="full", choices=["full", "short"],
                        help="BlazeFace model whose detections are scaled: full range (default) or short range")
    parser.add_argument("--out", default=None, metavar="FILE", help="where to write the scaler JSON (default "
                        "weights/<dataset>/scaler.json in the repository; for LSP also the manifest's 'scaler' of "
                        "the model in that folder, if any)")
    parser.add_argument("--fit", choices=("coverage", "image"), default=None,
                        help="coverage: the least-area box holding every joint of --coverage of the persons (default "
                        "for FLIC); image: the training image box predicted from the face, the b0 the LSP model is "
                        "trained on (default for LSP)")
    parser.add_argument("--coverage", type=float, default=COVERAGE, metavar="F",
                        help="fraction of matched training examples whose joints must all lie inside b0 (default 0.99)")
    parser.add_argument("--min-confidence", type=float, default=0.5, metavar="P", help="face detection threshold (default 0.5)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="face detection cache folder (default <repo>/cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# --------------------------------------------------------------------------- the fit (numpy only)

def required_extents(poses, faces):
    """Per example, how far b0 must reach from the face centre to hold all labelled joints.

    Args:
        poses: (N, k, 2) pose vectors in pixels, NaN unlabelled.
        faces: (N, 4) face boxes (cx, cy, w, h) in pixels.
    Returns:
        (N, 4) extents (L, R, T, B) in face units: min/max of (x - cx)/s and (y - cy)/s over
        the labelled joints, s = sqrt(w h).
    """
    import numpy as np

    from deeppose.engine.detection.faces import face_size

    poses = np.asarray(poses, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.float64)
    u = (poses - faces[:, None, 0:2]) / face_size(faces)[:, None, None]
    return np.stack([np.nanmin(u[..., 0], 1), np.nanmax(u[..., 0], 1),
                     np.nanmin(u[..., 1], 1), np.nanmax(u[..., 1], 1)], axis=1)


def fit_box(extents, coverage: float = COVERAGE):
    """Least-area box holding the extents of at least ``coverage`` of the examples (greedy peel).

    Args:
        extents: (N, 4) (L, R, T, B) from :func:`required_extents`.
        coverage: target fraction in (0, 1].
    Returns:
        (box, kept): box = (a, b, c, d) with a <= L, b >= R, c <= T, d >= B for every kept
        example; kept (N,) bool, the examples the box holds (at least ceil(coverage N)).
    Raises:
        ValueError: no examples or coverage outside (0, 1].
    """
    import numpy as np

    ext = np.asarray(extents, dtype=np.float64)
    n = len(ext)
    if n == 0:
        raise ValueError("no matched examples to fit the scaler on")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    keep = min(n, math.ceil(coverage * n - 1e-9))
    # v[:, k] is "more extreme" when smaller on every side: (L, -R, T, -B).
    v = ext * np.array([1.0, -1.0, 1.0, -1.0])
    orders = [np.lexsort((np.arange(n), v[:, k])) for k in range(4)]
    alive = np.ones(n, dtype=bool)
    ptr = [0, 0, 0, 0]

    def extreme(k: int, skip: int = -1) -> int:
        p = ptr[k]
        while not alive[orders[k][p]] or orders[k][p] == skip:
            p += 1
        return int(orders[k][p])

    def area(sides) -> float:
        return (-sides[1] - sides[0]) * (-sides[3] - sides[2])

    for _ in range(n - keep):
        for k in range(4):
            while not alive[orders[k][ptr[k]]]:
                ptr[k] += 1
        best_area, best_i = math.inf, -1
        for k in range(4):
            i = int(orders[k][ptr[k]])
            a = area([v[extreme(j, skip=i), j] for j in range(4)])
            if a < best_area - 1e-12:
                best_area, best_i = a, i
        alive[best_i] = False
    sides = [v[extreme(j), j] for j in range(4)]
    box = (sides[0] - EPS, -sides[1] + EPS, sides[2] - EPS, -sides[3] + EPS)
    return box, alive


def fit_image_box(faces, image_sizes, face_model: str, min_confidence: float):
    """The scaler that predicts a training image's box from its person's face (LSP's b0).

    Args:
        faces: (N, 4) matched face boxes (cx, cy, w, h) pixels.
        image_sizes: (N, 2) image (width, height) in pixels.
    Returns:
        engine.detection.persons.FaceScaler with offset = median((image centre - face centre) / s) and
        scale = median(image size / s) per axis, s = sqrt(w h); the image box is
        ((W - 1)/2, (H - 1)/2, W, H) (engine.detection.persons.frame_box).
    Raises:
        ValueError: no faces.
    """
    import numpy as np

    from deeppose.engine.detection.faces import face_size
    from deeppose.engine.detection.persons import FaceScaler

    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    if len(faces) == 0:
        raise ValueError("no matched examples to fit the scaler on")
    s = face_size(faces)[:, None]
    off = np.median(((sizes - 1) / 2 - faces[:, :2]) / s, axis=0)
    scale = np.median(sizes / s, axis=0)
    return FaceScaler(offset_x=float(off[0]), offset_y=float(off[1]), scale_x=float(scale[0]), scale_y=float(scale[1]),
                      face_model=face_model, min_confidence=min_confidence)


def scaler_from_box(box, face_model: str, min_confidence: float):
    """engine.detection.persons.FaceScaler for a box (a, b, c, d) in face units around the face centre."""
    from deeppose.engine.detection.persons import FaceScaler

    a, b, c, d = (float(x) for x in box)
    return FaceScaler(offset_x=(a + b) / 2, offset_y=(c + d) / 2, scale_x=b - a, scale_y=d - c,
                      face_model=face_model, min_confidence=min_confidence)


def joints_inside(poses, boxes):
    """(N,) bool: every labelled joint of pose i lies inside box i (edges included).

    Args:
        poses: (N, k, 2) pixels, NaN unlabelled; boxes: (N, 4) (cx, cy, w, h) pixels.
    """
    import numpy as np

    poses = np.asarray(poses, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    d = np.abs(poses - boxes[:, None, 0:2]) <= boxes[:, None, 2:4] / 2 + 1e-9
    return np.where(np.isnan(poses), True, d).all(axis=(1, 2)) & np.isfinite(boxes).all(axis=1)


def fit_joints_face(poses, faces, skeleton):
    """Fit the face box implied by the labelled eyes and nose (for examples without a detection).

    Model, with le, re, no the labelled left eye, right eye and nose (pixels):
        m = (le + re + no) / 3,  d = hypot(|le - re|, w_nose * |(le + re)/2 - no|)
        implied face: centre m + (offset_x, offset_y) * s,  size s = size_ratio * d (square)
    w_nose weighs the eye-to-nose distance so that d keeps its size on profile faces, where the
    eyes close up. w_nose is picked from a grid to minimize the spread of log(s / d); size_ratio
    and the offsets are medians over the matched training examples.

    Args:
        poses: (N, k, 2) matched training poses; faces: (N, 4) their detected faces.
    Returns:
        dict with size_ratio, nose_weight, offset_x, offset_y and the fit's log-size spread.
    """
    import numpy as np

    from deeppose.engine.detection.faces import face_size
    from deeppose.tools.data.person_boxes import face_joint_indices

    poses = np.asarray(poses, dtype=np.float64)
    li, ri, ni = face_joint_indices(skeleton)
    le, re, no = poses[:, li], poses[:, ri], poses[:, ni]
    ok = np.isfinite(le).all(1) & np.isfinite(re).all(1) & np.isfinite(no).all(1)
    le, re, no, f = le[ok], re[ok], no[ok], np.asarray(faces)[ok]
    s = face_size(f)
    d_eye = np.linalg.norm(le - re, axis=1)
    d_nose = np.linalg.norm((le + re) / 2 - no, axis=1)
    best = None
    for w in np.round(np.arange(0.5, 3.01, 0.25), 2):
        r = np.log(s / np.maximum(np.hypot(d_eye, w * d_nose), 1e-6))
        spread = float(np.std(r))
        if best is None or spread < best[0] - 1e-12:
            best = (spread, float(w), float(np.exp(np.median(r))))
    spread, w, ratio = best
    s_hat = ratio * np.maximum(np.hypot(d_eye, w * d_nose), 1e-6)
    off = (f[:, 0:2] - (le + re + no) / 3) / s_hat[:, None]
    return {"size_ratio": ratio, "nose_weight": w, "offset_x": float(np.median(off[:, 0])),
            "offset_y": float(np.median(off[:, 1])), "log_size_std": spread, "examples": int(ok.sum())}


# --------------------------------------------------------------------------- command

def run(args) -> int:
    """Fit the scaler of ``args.dataset`` on its train split, check it on val, write it; 0 on
    success, 2 with a one-line error."""
    import json
    import logging
    import time
    from pathlib import Path

    import numpy as np

    from deeppose.engine.constants import WEIGHTS_ROOT
    from deeppose.engine.detection.faces import FACE_MODELS, DetectorError, face_size, resolve_face_model
    from deeppose.engine.model import ModelError, read_manifest, write_manifest
    from deeppose.tools.data.datasets import DatasetError, load_dataset
    from deeppose.tools.data.person_boxes import (
        MATCH_MARGIN,
        detect_dataset_faces,
        example_b0,
        fit_head_face,
        match_dataset,
        match_head_dataset,
    )

    log = logging.getLogger("fit-scaler")
    t0 = time.perf_counter()
    name = getattr(args, "dataset", "flic")
    face_model = getattr(args, "face_model", None) or getattr(args, "model", "full")
    if not 0 < args.coverage <= 1:
        print(f"fit-scaler: --coverage must be in (0, 1], got {args.coverage}", file=sys.stderr)
        return 2
    label = name.upper()

    def match(ds, dets):   # FLIC: by the labelled eyes and nose; LSP: by the labelled neck and head top
        return match_dataset(ds, dets)[0] if name == "flic" else match_head_dataset(ds, dets)

    try:
        train = load_dataset(name, args.data, "train")
        matched = {}
        # FLIC also reports the short-range model's recall (why the full-range one is used).
        for tag in (("full", "short") if name == "flic" else (face_model,)):
            t = time.perf_counter()
            dets = detect_dataset_faces(train, tag, args.min_confidence, args.cache_dir, not args.no_progress)
            matched[tag] = (match(train, dets), time.perf_counter() - t)
    except (DatasetError, DetectorError) as e:
        print(f"fit-scaler: {e}", file=sys.stderr)
        return 2

    n = len(train)
    n_images = len({e.image_path for e in train.examples})
    recall = {tag: float(np.isfinite(m[0][:, 0]).mean()) for tag, m in matched.items()}
    for tag, (faces, secs) in matched.items():
        print(f"{label} train: {FACE_MODELS[tag]}: labelled person's face found for "
              f"{np.isfinite(faces[:, 0]).sum()}/{n} examples = {100 * recall[tag]:.1f}% recall "
              f"({n_images} images, {secs:.1f} s incl. cache)")

    faces, _ = matched[face_model]
    ok = np.isfinite(faces[:, 0])
    if not ok.any():
        print(f"fit-scaler: no face found in {label} train: nothing to fit", file=sys.stderr)
        return 2
    poses = train.poses()
    method = getattr(args, "fit", None) or ("coverage" if name == "flic" else "image")
    model_file = resolve_face_model(face_model).name
    if method == "coverage":
        box, kept = fit_box(required_extents(poses[ok], faces[ok]), args.coverage)
        scaler = scaler_from_box(box, model_file, args.min_confidence)
    else:
        scaler = fit_image_box(faces[ok], np.array([e.image_size for e in train.examples])[ok], model_file,
                               args.min_confidence)
    b0 = scaler.apply(faces[ok])
    inside = joints_inside(poses[ok], b0)
    coverage = float(inside.mean())

    fit = {
        "dataset": name, "split": "train", "examples": n, "images": n_images,
        "matched_examples": int(ok.sum()), "recall_train": recall,
        "match": (f"labelled eyes and nose inside the face box grown by {MATCH_MARGIN} face sizes" if name == "flic"
                  else "face centre within half a head length (neck to head top) of the head's midpoint, "
                  "face size 0.3-2 head lengths"),
        "coverage_train": coverage,
        "method": ("least-area box by greedy peeling, face units s = sqrt(w*h)" if method == "coverage" else
                   "median image box (the training b0) around the face, face units s = sqrt(w*h)"),
        "b0_size_px_median_train": [float(np.median(b0[:, 2])), float(np.median(b0[:, 3]))],
    }
    if method == "coverage":
        fit["target_coverage"] = args.coverage
    if name == "flic":
        fit["match_margin"] = MATCH_MARGIN
        scaler.extra = {"face_size": "sqrt(w*h)", "joints_face": fit_joints_face(poses[ok], faces[ok], train.skeleton),
                        "fit": fit}
    else:
        scaler.extra = {"face_size": "sqrt(w*h)", "head_face": fit_head_face(poses, train.skeleton, faces),
                        "fit": fit}

    # Checks on data the fit did not see (figures only, nothing is tuned on them).
    s = scaler.to_dict()
    boxes, sources = example_b0(train, s, args.cache_dir, progress=False)
    jmask = np.array([src in ("joints", "head") for src in sources])
    if jmask.any():
        fit["coverage_train_joints_b0"] = float(joints_inside(poses[jmask], boxes[jmask]).mean())
        fit["joints_b0_examples_train"] = int(jmask.sum())
    try:
        val = load_dataset(name, args.data, "val")
        vdets = detect_dataset_faces(val, face_model, args.min_confidence, args.cache_dir, not args.no_progress)
        vfaces = match(val, vdets)
        vok = np.isfinite(vfaces[:, 0])
        fit["recall_val"] = {face_model: float(vok.mean())}
        fit["coverage_val"] = float(joints_inside(val.poses()[vok], scaler.apply(vfaces[vok])).mean()) if vok.any() else None
        fit["matched_examples_val"] = int(vok.sum())
        fit["examples_val"] = len(val)
    except (DatasetError, DetectorError) as e:
        log.warning("no val check: %s", e)
    fit["seconds"] = round(time.perf_counter() - t0, 1)

    out = Path(args.out) if args.out else WEIGHTS_ROOT / name / "scaler.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from deeppose.engine.outputs import replaced_atomically

    with replaced_atomically(out, suffix=".json") as tmp:
        tmp.write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")

    print(f"scaler ({model_file}, min_confidence {args.min_confidence}): offset ({scaler.offset_x:.3f}, "
          f"{scaler.offset_y:.3f}) x face size, scale ({scaler.scale_x:.3f}, {scaler.scale_y:.3f}) x face size")
    target = f" (target {100 * args.coverage:g}%)" if method == "coverage" else ""
    print(f"{label} train: all joints inside b0 for {100 * coverage:.2f}% of {ok.sum()} matched examples"
          f"{target}; median b0 {fit['b0_size_px_median_train'][0]:.0f}x"
          f"{fit['b0_size_px_median_train'][1]:.0f} px, median face {np.median(face_size(faces[ok])):.0f} px")
    if "coverage_train_joints_b0" in fit:
        what = "labelled eyes/nose" if name == "flic" else "labelled neck/head top"
        print(f"{label} train: b0 from {what} (no face found, {fit['joints_b0_examples_train']} examples): "
              f"all joints inside for {100 * fit['coverage_train_joints_b0']:.1f}%")
    if fit.get("coverage_val") is not None:
        print(f"{label} val (check only, not fitted): recall {100 * fit['recall_val'][face_model]:.1f}%, all joints "
              f"inside b0 for {100 * fit['coverage_val']:.1f}% of {fit['matched_examples_val']} matched examples")
    print(f"wrote {out} in {fit['seconds']:.1f} s")
    if name == "lsp":   # b0 at run time only: training and evaluation keep the full image
        try:
            info = read_manifest(out.parent)
        except ModelError:
            info = None   # no model there yet: train copies scaler.json into the manifest
        if info is not None and info.skeleton.name == "lsp":
            info.manifest.scaler = scaler.to_dict()
            print(f"wrote {write_manifest(out.parent, info.manifest)} (its 'scaler': video and the app take b0 from faces)")
    return 0
