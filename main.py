"""deeppose command line: `python main.py [COMMAND] ...` (the desktop app when no command is given)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command -> (module with configure(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("deeppose.app.cli", "the desktop app: live webcam or video with stick figures (default)"),
    "video": ("deeppose.engine.video_cli", "process a video file into an annotated video and keypoints"),
    "evaluate": ("deeppose.tools.evaluate", "PCP and PDJ of a model (or the ground-truth oracle) on a dataset split"),
    "train": ("deeppose.tools.train", "train the cascade's stages on FLIC or LSP"),
    "fit-scaler": ("deeppose.tools.fit_scaler", "fit the face-box scaler that turns a detected face into b0"),
    "export-onnx": ("deeppose.tools.export_onnx", "export each stage of a model to ONNX"),
    "build-engines": ("deeppose.tools.build_engines", "build TensorRT engines for a model's stages"),
    "benchmark": ("deeppose.tools.benchmark", "latency and frames per second of each available backend"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="deeppose: real-time human pose estimation "
                                     "with the DeepPose cascade (Toshev & Szegedy, CVPR 2014).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # No command (or only app options such as --source) starts the app.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "-v", "--verbose")):
        argv.insert(0, "app")
    elif argv[0] in ("-v", "--verbose") and (len(argv) == 1 or argv[1] not in COMMANDS):
        argv.insert(1, "app")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
