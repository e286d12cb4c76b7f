"""`python main.py quantize-int8`: int8 copies of a model's ONNX stages for ONNX Runtime on a
CPU (build time; needs onnx and onnxruntime, not torch).

Static quantization (QDQ format, int8 weights per output channel, uint8 activations),
calibrated on training crops: the float cascade runs on ``--examples`` training images of
the model's dataset from a b0 around their labelled joints, and every stage's inputs are
recorded, so each stage is calibrated on the crops it sees at run time (b0 crops for stage
1, joint crops for stages >= 2). Writes ``stageN.int8.onnx`` beside each ``stageN.onnx``; the
video command and the benchmark use them with ``--int8`` (off by default).

On the 2-core VM a stage >= 2 batch of 11 crops ran about 2x faster in int8. Issue 10 allows
int8 only if FLIC val stage-3 PDJ@0.2 (mean) drops by at most 0.01: check with
``python main.py evaluate --int8`` before making it a default anywhere.
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
                        help="training images whose crops calibrate the activations (default: 64)")
    parser.add_argument("--data", metavar="DIR", default=None, help="dataset folder (default: the shared one)")


def calibration_inputs(folder: Path, examples: int, data: str | None = None, seed: int = 0) -> list:
    """Each stage's float32 (B, 3, S, S) inputs on ``examples`` training images.

    b0 is the tight box around an example's labelled joints, grown to a square with a 20%
    margin (a person box as the face scaler gives it); the float ONNX Runtime cascade runs
    from it with the model's flip setting off, and the crops each stage receives are kept.

    Returns:
        one list per stage of (B, 3, S, S) float32 arrays.
    """
    import numpy as np

    from deeppose.engine.backends import load_cascade
    from deeppose.engine.geometry import boxes_from_pose
    from deeppose.tools.datasets import load_dataset, load_image

    cascade, info = load_cascade(folder, "onnxruntime")
    recorded: list[list] = [[] for _ in cascade.regressors]

    class Recorder:
        def __init__(self, inner, stage):
            self.inner, self.stage = inner, stage

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def regress(self, crops):
            recorded[self.stage].append(np.array(crops, dtype=np.float32))
            return self.inner.regress(crops)

    dataset = load_dataset(info.skeleton.name, data, split="train")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(dataset.examples), size=min(examples, len(dataset.examples)), replace=False)
    cascade.regressors = [Recorder(r, s) for s, r in enumerate(cascade.regressors)]
    try:
        for i in chosen:
            ex = dataset.examples[int(i)]
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


def quantize_model(folder: Path, examples: int = 64, data: str | None = None) -> list[Path]:
    """Write ``stageN.int8.onnx`` for every stage of ``folder``; returns their paths.

    Raises:
        engine.backends.BackendError / engine.model.ModelError: the float ONNX files are
            missing or stale (export them first).
        ImportError: onnxruntime's quantization tools (they need the onnx package).
    """
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deeppose.engine.backends.onnxruntime_backend import int8_path
    from deeppose.engine.model import read_manifest

    info = read_manifest(folder)
    inputs = calibration_inputs(folder, examples, data)

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.batches = list(batches)

        def get_next(self):
            return {"crops": self.batches.pop()} if self.batches else None

    written = []
    with tempfile.TemporaryDirectory(prefix="deeppose-int8-") as tmp:
        for s, (path, batches) in enumerate(zip(info.onnx_files, inputs), start=1):
            pre = Path(tmp) / f"stage{s}.pre.onnx"
            quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
            out = int8_path(path)
            quantize_static(str(pre), str(out), Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            _copy_metadata(path, out)
            written.append(out)
    return written


def _copy_metadata(src: Path, dst: Path) -> None:
    """Carry the float graph's metadata (stage, checkpoint SHA-256, ...) into the int8 one,
    with ``quantization`` added, so the backend's staleness check covers it too."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for k, v in {**meta, "quantization": "int8 static QDQ, per-channel weights, calibrated on training crops"}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))


def run(args) -> int:
    """Run the command; exit code 0, or 2 with a one-line error."""
    from deeppose.engine.backends import BackendError
    from deeppose.engine.model import ModelError
    from deeppose.tools.datasets import DatasetError

    try:
        folder = resolve_weights(args.weights, args.model)
        written = quantize_model(folder, args.examples, args.data)
    except (WeightsError, BackendError, ModelError, DatasetError, ImportError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    return 0
