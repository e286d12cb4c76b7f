"""`python main.py quantize-int8`: int8 copies of a model's ONNX stages for ONNX Runtime on a
CPU (build time; needs onnx and onnxruntime >= 1.27, not torch).

Static quantization (QDQ format, int8 weights per output channel, uint8 activations),
calibrated on training crops: the float cascade runs on ``--examples`` training images of
the model's dataset from a b0 around their labelled joints, and every stage's inputs are
recorded, so each stage is calibrated on the crops it sees at run time (b0 crops for stage
1, joint crops for stages >= 2). Writes ``stageN.int8.onnx`` beside each ``stageN.onnx``.

The activation ranges found (MinMax) are kept as ONNX Runtime's calibration cache,
``stageN.int8-calibration.json`` in the model folder (tracked: a few kB), with the SHA-256 of
the checkpoint they were measured for. With those files the int8 copies are built without the
training data (``make onnx`` does it for every shipped model); ``--recalibrate`` measures them
again from the data (needed after retraining a stage: a cache made for another checkpoint is
refused).

Issue 10 allows int8 only if val stage-S PDJ@0.2 (mean) drops by at most 0.01: ``python
main.py evaluate --int8 --write-manifest`` records the int8 figures under the manifest's
"int8", and the default precision (:func:`engine.backends.onnxruntime_backend.int8_record`)
is int8 only for a model whose record passes that rule.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeppose.engine.cli_args import WeightsError, add_weights, positive_int, resolve_weights


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    add_weights(parser)
    parser.add_argument("--examples", type=positive_int, default=64, metavar="N",
                        help="training images whose crops calibrate the activations, when they are measured "
                        "(default: 64)")
    parser.add_argument("--data", metavar="DIR", default=None, help="dataset folder (default: the shared one)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="measure the activation ranges on the training data again, even where the model folder "
                        "has calibration caches (stageN.int8-calibration.json); needed after retraining")


def calibration_inputs(folder: Path, examples: int, data: str | None = None, seed: int = 0) -> list:
    """Each stage's float32 (B, 3, S, S) inputs on ``examples`` training images.

    Training images of the model's dataset (a body model: FLIC's and LSP's together); b0 is
    the tight box around an example's labelled joints, grown to a square with a 20%
    margin (a person box as the face scaler gives it); the float ONNX Runtime cascade runs
    from it with the model's flip setting off, and the crops each stage receives are kept.

    Returns:
        one list per stage of (B, 3, S, S) float32 arrays.
    """
    import numpy as np

    from deeppose.engine.backends import load_cascade
    from deeppose.engine.geometry import boxes_from_pose
    from deeppose.tools.data.datasets import load_dataset, load_image

    cascade, info = load_cascade(folder, "onnxruntime", int8=False)
    recorded: list[list] = [[] for _ in cascade.regressors]

    class Recorder:
        def __init__(self, inner, stage):
            self.inner, self.stage = inner, stage

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def regress(self, crops):
            recorded[self.stage].append(np.array(crops, dtype=np.float32))
            return self.inner.regress(crops)

    if info.skeleton.name == "body":   # psi v2 trained on both: FLIC's and LSP's training images
        if data is not None:
            raise ValueError("a body model calibrates on FLIC's and LSP's training splits in the shared data: "
                             "give no --data")
        pool = [e for name in ("flic", "lsp") for e in load_dataset(name, None, split="train").examples]
    else:
        pool = load_dataset(info.skeleton.name, data, split="train").examples
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(pool), size=min(examples, len(pool)), replace=False)
    cascade.regressors = [Recorder(r, s) for s, r in enumerate(cascade.regressors)]
    try:
        for i in chosen:
            ex = pool[int(i)]
            box = boxes_from_pose(ex.pose, margin=0.2)
            if not np.isfinite(box).all():
                continue
            side = box[2:].max()
            b0 = np.array([[box[0], box[1], side, side]])
            cascade.run(load_image(ex.image_path), b0)
    finally:
        for r in cascade.regressors:
            r.inner.close()
    return recorded


CALIBRATION_SUFFIX = ".int8-calibration.json"


def calibration_path(onnx_path: Path) -> Path:
    """A stage's calibration cache beside its float graph: ``stageN.onnx`` ->
    ``stageN.int8-calibration.json``."""
    return onnx_path.with_name(onnx_path.name[: -len(".onnx")] + CALIBRATION_SUFFIX)


def check_calibration(cache: Path, checkpoint: Path) -> None:
    """Refuse a calibration cache measured for another checkpoint than ``checkpoint``.

    Raises:
        ValueError: unreadable cache, or made for another checkpoint (one line, with the fix).
    """
    import json

    from deeppose.engine.backends.common import file_sha256

    try:
        made_for = json.loads(cache.read_text()).get("deeppose", {}).get("checkpoint_sha256")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"cannot read the calibration cache {cache}: {e}") from None
    if made_for != file_sha256(checkpoint):
        raise ValueError(f"{cache.name} was measured for another {checkpoint.name}; measure it again from the "
                         f"training data with: python main.py quantize-int8 --weights {cache.parent} --recalibrate")


def quantize_model(folder: Path, examples: int = 64, data: str | None = None, recalibrate: bool = False) -> list[Path]:
    """Write ``stageN.int8.onnx`` for every stage of ``folder``; returns their paths.

    Each stage's activation ranges come from its calibration cache (:func:`calibration_path`)
    when there is one and ``recalibrate`` is off; otherwise they are measured on ``examples``
    training images (:func:`calibration_inputs`, which needs the dataset) and the cache is
    written, tagged with the checkpoint's SHA-256.

    The caches and int8 copies are replaced only once every stage is done.

    Raises:
        engine.backends.BackendError / engine.model.ModelError: the float ONNX files are
            missing or stale (export them first).
        ValueError: a cache made for another checkpoint (see :func:`check_calibration`) or
            another export (tensor names); ``data`` given for a body model.
        tools.data.datasets.DatasetError: calibration is needed and the dataset is missing.
        ImportError: onnxruntime's quantization tools (they need the onnx package).
    """
    import json
    import shutil
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deeppose.engine.backends.common import file_sha256
    from deeppose.engine.backends.onnxruntime_backend import create_onnxruntime_regressors, int8_path
    from deeppose.engine.model import read_manifest
    from deeppose.engine.outputs import replaced_atomically

    info = read_manifest(folder)
    caches = [None if p is None else calibration_path(p) for p in info.onnx_files]
    measure = recalibrate or not all(c is not None and c.is_file() for c in caches)
    if measure:   # its float cascade checks that every float graph is there and fresh
        inputs = calibration_inputs(folder, examples, data)
    else:
        for reg in create_onnxruntime_regressors(info, threads=1, int8=False):   # the same check
            reg.close()
        for cache, ckpt in zip(caches, info.stage_files):
            check_calibration(cache, ckpt)
        inputs = [None] * len(caches)

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.batches = list(batches)

        def get_next(self):
            return {"crops": self.batches.pop()} if self.batches else None

    written, measured = [], []
    with tempfile.TemporaryDirectory(prefix="deeppose-int8-") as tmp:
        for s, (path, ckpt, cache, batches) in enumerate(zip(info.onnx_files, info.stage_files, caches, inputs), start=1):
            pre = Path(tmp) / f"stage{s}.pre.onnx"
            quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
            if measure:   # quantize_static measures the ranges and writes them here
                use = Path(tmp) / cache.name
            else:
                use = cache
                _check_tensor_names(cache, pre)
            out = Path(tmp) / int8_path(path).name
            quantize_static(str(pre), str(out), Reader(batches) if measure else None, quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibration_cache_path=str(use))
            if measure:
                payload = json.loads(use.read_text())
                payload["deeppose"] = {"checkpoint_sha256": file_sha256(ckpt), "stage": s,
                                       "dataset": info.skeleton.name, "split": "train", "examples": examples,
                                       "method": "MinMax over the crops the float cascade gives this stage"}
                use.write_text(json.dumps(payload, indent=1) + "\n")
                measured.append((use, cache))
            _copy_metadata(path, out, use)
            written.append((out, int8_path(path)))
        # every stage done: only now replace the caches and int8 copies (a failure leaves them as they were)
        # (each through a temporary file of its own beside it: the system's temporary folder may
        # be another file system, where a move would write the file in place)
        for src, dst in measured + written:
            with replaced_atomically(dst, suffix=dst.suffix) as tmp:
                shutil.copyfile(src, tmp)
            dst.chmod(0o644)
    return [dst for _, dst in written]


def _check_tensor_names(cache: Path, graph: Path) -> None:
    """Refuse a calibration cache whose tensors the graph does not have (an ONNX file exported
    by another exporter version names its tensors otherwise).

    Raises:
        ValueError: one line, with the command that measures the cache again.
    """
    import json

    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    names = {v.name for v in model.graph.input} | {o for n in model.graph.node for o in n.output}
    missing = sorted(set(json.loads(cache.read_text())["data"]) - names)
    if missing:
        raise ValueError(f"{cache.name} names tensors that {graph.name.replace('.pre', '')} lacks ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}: exported by another version?); measure it again with: "
                         f"python main.py quantize-int8 --weights {cache.parent} --recalibrate")


def _copy_metadata(src: Path, dst: Path, cache: Path) -> None:
    """Carry the float graph's metadata (stage, checkpoint SHA-256, ...) into the int8 one,
    with ``quantization`` and the SHA-256 of the calibration cache it was built from
    (``calibration_sha256``, which the manifest's int8 record names), so the backend's
    staleness checks cover it too."""
    import onnx

    from deeppose.engine.backends.common import file_sha256

    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for k, v in {**meta, "quantization": "int8 static QDQ, per-channel weights, calibrated on training crops",
                 "calibration_sha256": file_sha256(cache)}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))


def run(args) -> int:
    """Run the command; exit code 0, or 2 with a one-line error."""
    from deeppose.engine.backends import BackendError
    from deeppose.engine.model import ModelError
    from deeppose.tools.data.datasets import DatasetError

    try:
        folder = resolve_weights(args.weights, args.model)
        written = quantize_model(folder, args.examples, args.data, args.recalibrate)
    except (WeightsError, BackendError, ModelError, DatasetError, ImportError, OSError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0
