"""`python main.py build-engines`: build one TensorRT engine per stage of a model folder.

The engines are written next to the weights (``stage<s>.<precision>.sm<cc>-<gpu>.trt<ver>.engine``
plus a ``.json`` metadata file: TensorRT version, GPU name and compute capability, precision,
batch profile, ONNX and checkpoint checksums). The optimization profile covers the batch
sizes the cascade uses: 1..N persons at stage 1, k..N*k joint crops at stages >= 2 (N =
``--max-batch``), tuned for one person.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its sub-parser."""
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "flic", help="model folder (weights/flic)")
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="half precision (default)")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="single precision")
    parser.set_defaults(precision="fp16")
    parser.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="most persons per frame the engines accept (default 8; stages >= 2 take N*k crops)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace (MiB)")
    parser.add_argument("--device", default=None, help="CUDA device (default cuda:0)")


def run(args) -> int:
    """Build the engines and print where they went; 1 with a one-line reason on failure."""
    import time

    from deeppose.engine.backends.tensorrt_backend import DEFAULT_MAX_PERSONS, build_engines, current_environment
    from deeppose.engine.model import ModelError, read_manifest

    max_persons = DEFAULT_MAX_PERSONS if args.max_batch is None else args.max_batch
    if max_persons < 1:
        print(f"build-engines: --max-batch must be at least 1, got {max_persons}", file=sys.stderr)
        return 2
    try:
        info = read_manifest(args.weights)
        env = current_environment(args.device)
        print(f"building {args.precision} engines for {env.describe()}, up to {max_persons} persons per frame")
        t = time.perf_counter()
        paths = build_engines(info, args.precision, max_persons, args.device, args.workspace_mb)
    except ModelError as e:  # BackendError included
        print(f"build-engines: {e}", file=sys.stderr)
        return 2
    for s, p in enumerate(paths, start=1):
        print(f"stage {s}: {p} ({p.stat().st_size / 1e6:.1f} MB)")
    print(f"built {len(paths)} engine(s) in {time.perf_counter() - t:.0f} s; run with --backend tensorrt")
    return 0
