"""Command-line automation of the app: ``--quit-after-frames``, ``--screenshot``, the exit
code, and closing the window cleanly on Ctrl-C or SIGTERM.

:class:`AutomationMixin` is a mixin of :class:`app.window.MainWindow` (it uses the window's
``view``, ``total_frames_shown``, ``quit_after_frames``, ``screenshot_path``, ``exit_code`` and
``show_error``); :func:`close_on_signals` is used by :func:`app.cli.run`.
"""
from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

log = logging.getLogger(__name__)


class AutomationMixin:
    """Finishing an automated run: the screenshot, the exit code, closing (module docstring)."""

    def automation_failed(self, code: int, finish: bool = True) -> None:
        """In an automated run (``quit_after_frames`` set): exit with ``code`` (1: the source or
        the model failed, 2: bad options) and, with ``finish``, end the run now. Does nothing
        in an interactive run (the window stays open with the error shown)."""
        if self.quit_after_frames is None:
            return
        self.exit_code = code
        if finish:
            self.finish_automation()

    def finish_automation(self) -> None:
        """After the last frame: save the screenshot (if asked) and close the window."""
        if self._finished:
            return
        self._finished = True
        st = self.view.stats
        log.info("automation: %d frames shown, %d dropped, %s fps, latency %s ms, stages %s, backend %s",
                 self.total_frames_shown, st.dropped, "-" if st.fps is None else f"{st.fps:.1f}",
                 "-" if st.latency_ms is None else f"{st.latency_ms:.0f}", len(st.stage_ms), st.backend or "none")
        self.save_screenshot()
        self.automationFinished.emit()
        self.close()

    def save_screenshot(self, path: str | Path | None = None) -> Path | None:
        """Save a grab of the whole window (view, HUD, controls) as PNG."""
        path = Path(path) if path else self.screenshot_path
        if path is None:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            saved = self.grab().save(str(path))
        except OSError as e:   # never out of a Qt slot: PyQt would abort the process
            saved, why = False, f": {e.strerror or e}"
        else:
            why = ""
        if not saved:
            self.show_error(f"cannot write screenshot {path}{why}")
            if self.quit_after_frames is not None:
                self.exit_code = self.exit_code or 1
            return None
        log.info("screenshot saved to %s", path)
        return path


@contextlib.contextmanager
def close_on_signals(holder: dict):
    """Ctrl-C / SIGTERM close ``holder["window"]`` like its Quit action (finishing any
    recording), also while it is being built; yields the list of the signal numbers received.

    Python runs signal handlers only between bytecodes, so a timer gives it the chance while
    Qt waits for events. The previous handlers are restored on exit.
    """
    from PyQt6.QtCore import QTimer

    interrupted: list[int] = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        if "window" in holder:
            QTimer.singleShot(0, holder["window"].close)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(200)
    try:
        yield interrupted
    finally:
        tick.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
