"""The ``deeppose`` command (also ``python main.py`` in a checkout): ``deeppose [COMMAND] ...``,
the desktop app when no command is given."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from deeppose.engine.interrupts import caused_by_ctrl_c, ctrl_c_held, deliver_ctrl_c_from_finalizers, ignore_ctrl_c

# command -> (module with configure(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("deeppose.app.cli", "the desktop app: live webcam or video with stick figures (default)"),
    "video": ("deeppose.engine.video_cli", "process a video file into an annotated video and keypoints"),
    "evaluate": ("deeppose.tools.eval.evaluate", "PCP and PDJ of a model (or the ground-truth oracle) on a dataset split"),
    "train": ("deeppose.tools.train.train", "train the cascade's stages on FLIC or LSP"),
    "fit-scaler": ("deeppose.tools.data.fit_scaler", "fit the face-box scaler that turns a detected face into b0"),
    "pack-data": ("deeppose.tools.data.pack", "a compact copy of FLIC and LSP for a machine the full data cannot travel to"),
    "fetch-pretrained": ("deeppose.tools.train.pretrained", "fetch and verify the ImageNet backbones of psi v2 (build time)"),
    "export-onnx": ("deeppose.tools.export.export_onnx", "export each stage of a model to ONNX (build time)"),
    "quantize-int8": ("deeppose.tools.export.quantize_int8", "int8 copies of a model's ONNX stages, calibrated on training crops (build time)"),
    "build-engines": ("deeppose.tools.export.build_engines", "build TensorRT engines for a model's stages (build time)"),
    "benchmark": ("deeppose.tools.bench.benchmark", "latency and frames per second of each available backend"),
}


EXAMPLES = """examples:
  {prog}                                      the desktop app on the first camera
  {prog} --source clip.mp4 --stages 2         the app on a video file, 2 cascade stages
  {prog} video walking.mp4 --keypoints walking.jsonl
                                               annotated walking.pose.mp4 + keypoints
  {prog} video walking.mp4 --model lsp        the same with the full-body model
  {prog} evaluate --dataset flic --plot pdj.png
                                               PCP and PDJ on FLIC val
  {prog} train --dataset flic --stages 3      train cascade stages 1..3
  {prog} benchmark                            speed of every backend available here
  {prog} COMMAND --help                       the options of one command

Common options mean the same everywhere: --model flic|lsp (upper or full body), --weights DIR
(a model folder), --backend NAME (default: auto), --stages N (cascade stages 1..N),
--threads N, --precision fp16|fp32."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``error: <what> (see: PROG COMMAND --help)``, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser(prog: str = "deeppose") -> argparse.ArgumentParser:
    """The parser of every command (imports each command module: they import only argparse-light
    modules at module level)."""
    parser = ArgumentParser(prog=prog, description="deeppose: real-time human pose estimation "
                            "with the DeepPose cascade (Toshev & Szegedy, CVPR 2014).",
                            epilog=EXAMPLES.replace("{prog}", prog),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None, prog: str = "deeppose") -> int:
    """Run one command; returns its exit code (0 done, 1 failure, 2 with a one-line error for bad
    options, 130 when interrupted with Ctrl-C; ``--help`` exits through SystemExit).

    Ctrl-C at any moment, from parsing the options (which imports every command module) to the
    command's end, gives 130 and one line, also where a native module wrapped it in an
    ImportError while it initialized (:mod:`deeppose.engine.interrupts`). With ``argv`` None
    (the process's own command line: the ``deeppose`` script, ``python -m deeppose``,
    ``python main.py``) this is the program, and the process's hooks are its own: a Ctrl-C
    that a finalizer swallowed is raised again, and once the exit code is decided SIGINT is
    ignored, so that a late Ctrl-C cannot end the finished process by the signal while Python
    tears down (exit -2 and no line) instead of with its code."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if program:
        deliver_ctrl_c_from_finalizers()
    try:
        code = _run(argv, prog)
    except BaseException as e:
        if not caused_by_ctrl_c(e) or isinstance(e, SystemExit):
            raise
        if program:
            ignore_ctrl_c()   # a second Ctrl-C cannot interrupt the line below
        command = argv[1] if argv[:1] in (["-v"], ["--verbose"]) and len(argv) > 1 else (argv or [""])[0]
        command = command if command in COMMANDS else ""
        print(f"\ninterrupted: {prog}{' ' + command if command else ''} stopped (Ctrl-C)", file=sys.stderr)
        code = 130
    if program:
        ignore_ctrl_c()
    return code


def _run(argv: list[str], prog: str) -> int:
    """Parse ``argv`` and run its command (see :func:`main`)."""
    from deeppose.engine.cli_args import safe_console

    safe_console()   # a file name the console cannot encode is escaped, never a crash
    # No command (or only app options such as --source) starts the app.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "-v", "--verbose")):
        argv.insert(0, "app")
    elif argv[0] in ("-v", "--verbose") and (len(argv) == 1 or argv[1] not in COMMANDS):
        argv.insert(1, "app")
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as e:   # a usage error was printed (one line); --help exits 0 as argparse does
        if e.code in (0, None):
            raise
        return int(e.code) if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Imported before the command, with a Ctrl-C held until they are (engine.interrupts): numpy's
    # C core cannot take one while it initializes (it reports a broken install and loses the
    # KeyboardInterrupt), and OpenCV's loader runs its config under a bare `except: pass`. Not
    # OpenCV for the app: importing cv2 points QT_QPA_PLATFORM_PLUGIN_PATH at OpenCV's own Qt
    # plugins, and the app imports it only once its QApplication exists.
    with ctrl_c_held():
        import numpy  # noqa: F401
        if args.command != "app":
            import cv2  # noqa: F401
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)
