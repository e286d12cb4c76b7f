"""`python main.py [app] [--source 0|FILE] ...`: the desktop app (the default command).

Only argparse is imported at module level (``main.py --help`` imports every command);
PyQt6, OpenCV and torch are imported in :func:`run`.
"""
from __future__ import annotations

import argparse

from deeppose.engine.cli_args import (
    WeightsError,
    add_backend,
    add_live_outputs,
    add_stages,
    add_weights,
    output_problem,
    positive_int,
    resolve_weights,
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the app's arguments to its argparse sub-parser."""
    parser.add_argument("--source", metavar="0|FILE",
                        help="start with this source: a camera index (0, 1, ...) or a video file "
                             "(default: the first camera found)")
    add_weights(parser, default_text="the one chosen in the app and saved in the settings, initially flic")
    add_backend(parser, default=None, default_text="the one saved in the settings, initially auto")
    add_stages(parser)
    parser.add_argument("--quit-after-frames", type=positive_int, metavar="N",
                        help="close the window after N frames were displayed, or when the source "
                             "ends or fails (for automation and tests)")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="save a grab of the window after the last frame (with --quit-after-frames, "
                             "or when the window is closed)")
    parser.add_argument("--record", metavar="FILE.mp4",
                        help="record from the start: the annotated video to FILE.mp4, the keypoints to "
                             "FILE.jsonl beside it")
    add_live_outputs(parser)   # --serve (this run; the settings panel has it too) and --osc


def run(args: argparse.Namespace) -> int:
    """Start QApplication and the main window; returns the app's exit code: 1 when the app
    cannot open a window here or an automated run failed (source, model), 2 for bad options,
    128 + the signal number after Ctrl-C or SIGTERM (the window closes cleanly, a recording
    is finished)."""
    import sys

    from deeppose.engine.outputs import overwrite_problem, recording_outputs

    from .system_check import display_problem

    # Before Qt: its own message for a missing display or library is an abort, and misleading.
    problem = display_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:   # for this run only, as --backend and --stages (the settings keep the user's choice)
        weights = resolve_weights(args.weights, args.model, default=None)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .capture import Source

    source = Source.parse(args.source) if args.source is not None else None
    # The files this run writes must not be its video source (the same check as the video command's).
    problem = overwrite_problem(
        recording_outputs(args.record) + [(args.screenshot, "screenshot")],
        [source.value] if source is not None and source.kind == "file" else [])
    for path, what in ((args.screenshot, "screenshot"), (args.record, "recording")):
        problem = problem or (output_problem(path, what) if path else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from deeppose.engine.streaming import StreamError, open_live_outputs

    try:   # listening before the window opens: a port in use is a bad option, like the others
        live = open_live_outputs(args.serve, args.osc, announce=lambda line: print(line, flush=True))
    except StreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run_window(args, source, weights, live)
    finally:
        if live is not None:
            live.close()


def _run_window(args: argparse.Namespace, source, weights, live) -> int:
    """The Qt part of :func:`run`: the application, the window and its event loop."""
    import signal
    import sys

    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from .automation import close_on_signals
    from .settings import APPLICATION, ORGANIZATION
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from deeppose.engine.interrupts import ctrl_c_held
    with ctrl_c_held():   # once Qt is up (deeppose/cli.py: OpenCV's loader swallows a Ctrl-C)
        import cv2  # noqa: F401
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("deeppose")
    overrides = {"weights": None if weights is None else str(weights), "model": args.model, "backend": args.backend,
                 "stages": args.stages}

    # Ctrl-C / SIGTERM close the window like its Quit action (finishing any recording), also
    # while it is being built.
    holder: dict = {}
    with close_on_signals(holder) as interrupted:
        window = holder["window"] = MainWindow(source=source, overrides=overrides,
                                               quit_after_frames=args.quit_after_frames,
                                               screenshot=args.screenshot, record=args.record, live=live)
        window.show()
        if interrupted:   # a signal came while the window was being built
            QTimer.singleShot(0, window.close)
        code = app.exec()
    if interrupted:
        print(f"interrupted ({signal.Signals(interrupted[0]).name}): the window was closed"
              + (f"; recording saved to {window.recording_path}" if window.recording_path else ""), file=sys.stderr)
        return 128 + interrupted[0]
    return window.exit_code or code
