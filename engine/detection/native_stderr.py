"""Filtering MediaPipe's native start-up chatter out of the process's stderr.

MediaPipe's native code (LiteRT, glog) prints to file descriptor 2 directly: INFO lines, one
"Sparsity tensors may not yet be fully supported" warning per sparse tensor, a memory-alignment
warning on an early image, INFO lines on close. :func:`filtered_native_stderr` routes fd 2 to a
temporary file for a block and then passes on every line that is not known chatter (errors
included). Set ``DEEPPOSE_MEDIAPIPE_LOGS=1`` to see everything unfiltered.

Thread safety: fd 2 belongs to the whole process, so one re-entrant lock serializes the blocks
(a detector created, run or closed in one thread while another thread's detector does the same
waits; a block nested in the same thread, e.g. a detector closed by the garbage collector
inside another detector's block, nests instead of deadlocking). Lines other threads write to
fd 2 during a block are passed on when it ends (only lines that look like MediaPipe's chatter
are dropped).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

NOISE = re.compile(
    r"^(INFO: "
    r"|WARNING: \[model_load\.cc:\d+\] Sparsity tensors"
    r"|WARNING: Logging before InitGoogle\(\)"
    r"|[IW]\d{4} [\d:.]+ +\d+ )"
)
"""The lines of MediaPipe's known chatter (LiteRT's INFO lines and warnings, glog lines)."""
_LOCK = threading.RLock()
"""Serializes the blocks of :func:`filtered_native_stderr` across threads (re-entrant: see module doc)."""


@contextlib.contextmanager
def filtered_native_stderr(drop: tuple[str, ...] = ()):
    """Route file descriptor 2 to a temporary file for the block, then pass on every line that
    is not known MediaPipe chatter. ``drop`` holds extra texts to drop (e.g. the message of an
    exception raised from the block, so that it is not printed twice)."""
    if os.environ.get("DEEPPOSE_MEDIAPIPE_LOGS"):
        yield []
        return
    with _LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (some GUI launches): nothing to filter
            yield []
            return
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), 2)
        extra: list[str] = []
        try:
            yield extra
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            tmp.close()
            kept = [line for line in text.splitlines()
                    if line.strip() and not NOISE.match(line)
                    and not any(d and d in line for d in (*drop, *extra))]
            if kept:
                os.write(2, ("\n".join(kept) + "\n").encode())
