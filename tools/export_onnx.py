"""`python main.py export-onnx`: export each stage of a model folder to ONNX and check it.

Each stage becomes ``<folder>/stage<s>.<sha16>.onnx`` (keyed by the checkpoint's SHA-256, see
:mod:`engine.backends.onnxruntime_backend`) with a dynamic batch axis: persons at stage 1,
persons x k joint crops at stages >= 2. The check runs PyTorch and ONNX Runtime on real
crops of a video frame (stage 1: person boxes; stages >= 2: joint-sized boxes around the
frame) and prints the largest difference in normalized coordinates.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its sub-parser."""
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "flic", help="model folder (weights/flic)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the .onnx files to this folder, e.g. to deploy them elsewhere (default: "
                             "next to the weights, where the onnxruntime and tensorrt backends look)")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                        help="torch.onnx exporter (default dynamo when onnxscript is installed)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    parser.add_argument("--force", action="store_true", help="export even when a cached file exists")
    parser.add_argument("--no-check", action="store_true", help="skip the PyTorch-vs-ONNX Runtime check on real crops")


def real_crops(info, count: int = 11, stage: int = 1, seed: int = 0):
    """(count, 3, S, S) float32 network inputs cropped from a real video frame (or, without the
    shared data, a FLIC image); None when neither is readable.

    Stage 1 crops person-sized boxes (b0), stages >= 2 joint-box-sized boxes (Eq. 7 sizes,
    sigma * a torso diameter of about a fifth of the frame height).
    """
    import numpy as np

    from deeppose.engine.geometry import crop_boxes, to_network_input
    from deeppose.tools.benchmark import default_video, read_frames

    frames = read_frames(default_video(), 1, start=60)
    if frames:
        image = frames[0]
    else:
        import cv2
        flic = default_video().parents[1] / "flic" / "images"
        files = sorted(flic.glob("*.jpg"))[:1] if flic.is_dir() else []
        image = cv2.imread(str(files[0])) if files else None
        if image is None:
            return None
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    side = (0.6 if stage == 1 else 0.2 * info.sigma) * h
    boxes = np.column_stack([rng.uniform(0.3 * w, 0.7 * w, count), rng.uniform(0.3 * h, 0.7 * h, count),
                             side * rng.uniform(0.8, 1.2, count), side * rng.uniform(0.8, 1.2, count)])
    return to_network_input(crop_boxes(image, boxes, info.input_size))


def parity(module, onnx_path, crops) -> float:
    """Largest |PyTorch - ONNX Runtime| output difference on ``crops``, normalized coordinates."""
    import numpy as np
    import torch

    from deeppose.engine.backends.onnxruntime_backend import OnnxRuntimeRegressor
    with torch.no_grad():
        want = module.float().eval()(torch.from_numpy(crops)).numpy()
    got = OnnxRuntimeRegressor(onnx_path, threads=1).regress(crops)
    return float(np.abs(got - want).max())


def run(args) -> int:
    """Export (or find cached) ONNX files for every stage and print them; 1 on failure."""
    import onnxruntime

    from deeppose.engine.backends import BackendError
    from deeppose.engine.backends.onnxruntime_backend import OPSET, PARITY_TOLERANCE, ensure_onnx, onnx_metadata
    from deeppose.engine.model import ModelError, load_stage_module, read_manifest

    try:
        info = read_manifest(args.weights)
        paths = ensure_onnx(info, args.out, args.exporter, args.force, args.opset or OPSET)
    except (BackendError, ModelError) as e:
        print(f"export-onnx: {e}", file=sys.stderr)
        return 2
    print(f"model {args.weights}: {len(paths)} stage(s); check backend: onnxruntime {onnxruntime.__version__} (CPU)")
    failed = False
    for s, (ckpt, path) in enumerate(zip(info.stage_files, paths), start=1):
        meta = onnx_metadata(path)
        line = (f"stage {s}: {path} ({path.stat().st_size / 1e6:.1f} MB, opset {meta.get('opset_imported')}, "
                f"{meta.get('exporter', '?')} exporter, batch axis '{meta.get('batch_axis', '?')}')")
        if not args.no_check:
            crops = real_crops(info, 1 if s == 1 else info.skeleton.k, stage=s)
            if crops is None:
                line += "; parity not checked (no shared data found)"
            else:
                diff = parity(load_stage_module(ckpt, info.skeleton.k), path, crops)
                ok = diff <= PARITY_TOLERANCE
                failed |= not ok
                line += f"; max |torch - onnx| on {len(crops)} real crops {diff:.1e} {'ok' if ok else 'FAILED'}"
        print(line)
    return 1 if failed else 0
