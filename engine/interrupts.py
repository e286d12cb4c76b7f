"""Ctrl-C (SIGINT) at every moment of a command: exit 130 with one line, or the command's own
exit code once it is done; never a traceback, a death by the signal, or a Ctrl-C that is lost.

Python raises KeyboardInterrupt wherever its SIGINT handler runs next; deeppose/cli.py catches
it around the whole command. These moments need more (each was seen with SIGINT sent at every
import of `main.py video`, tests/engine/test_video.py and tests/engine/test_interrupts.py):

- Inside a native module's initialization. pybind11 modules (onnxruntime, LiteRT, MediaPipe)
  turn a KeyboardInterrupt raised while they initialize into ImportError("initialization
  failed") with the KeyboardInterrupt as its context; code that reads an ImportError as "not
  installed" then falls back, and a Ctrl-C 0.5 s into `main.py video` ended 0 on PyTorch or on
  the float graphs. numpy's C core makes it ImportError("... PyCapsule_Import could not import
  module "datetime"") and loses the KeyboardInterrupt; OpenCV's loader runs its config under a
  bare ``except: pass``. :func:`ctrl_c_held` keeps a Ctrl-C out of such an import and delivers
  it when the import is done.
- Inside Python's machinery: a ``__set_name__`` that raises while a class is created (the
  dataclasses of ``filelock``) becomes a RuntimeError. :func:`caused_by_ctrl_c` tells an error
  a Ctrl-C caused: deeppose/cli.py reads it as the Ctrl-C, and code that turns errors into a
  fallback or a message lets it through.
- Inside a finalizer: a KeyboardInterrupt raised in a ``__del__`` method or a weakref callback
  (importlib's module locks have one) cannot propagate; Python prints "Exception ignored in"
  and goes on (the run then ended 0 after all frames). :func:`deliver_ctrl_c_from_finalizers`
  has it raised again in the code that runs next.
- While the interpreter exits. Python 3.11 restores SIGINT's default action (end the process)
  before it destroys the modules (about 70 ms with ONNX Runtime, LiteRT and OpenCV loaded, on 2
  cores), so a Ctrl-C then killed a finished command: exit status -2 (130 in a shell) and no
  line, its own exit code lost (issue 23). :func:`ignore_ctrl_c` is called once the exit code
  is decided (deeppose/cli.py, for the process's own command line only).
- Before Python has installed its handler (the first milliseconds of the process): the
  default action ends the process; nothing in Python can change that.
"""
from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading


def caused_by_ctrl_c(error: BaseException | None) -> bool:
    """Whether ``error`` is a KeyboardInterrupt or was raised because of one (a KeyboardInterrupt
    among its ``__cause__`` / ``__context__`` chain, as native modules wrap it while they import)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def ctrl_c_held():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and deliver it after the block to the
    handler that was in place (Python's default raises KeyboardInterrupt there; an ignored SIGINT
    stays ignored; a command's own handler, e.g. the video command's "stop after this frame", is
    called), also when the block raised.

    For native imports and initializations that do not survive a KeyboardInterrupt raised
    inside them (see the module docstring). Only the main thread can change the handler, and only
    it receives KeyboardInterrupt: elsewhere the block runs as it is. There is no moment without a
    Python handler: the C-level handler stays Python's throughout, only the Python function
    changes (and ``signal.signal`` runs a pending one before it swaps).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        # None: a handler not installed from Python (an embedding interpreter); leave the default
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if held:
            signal.raise_signal(signal.SIGINT)   # runs the restored handler now (or ignores / ends the process)


def deliver_ctrl_c_from_finalizers() -> None:
    """From now on, a KeyboardInterrupt that a finalizer (``__del__``, a weakref callback) could
    not propagate is raised again in the main thread's code that runs next (the SIGINT handler in
    place runs again), instead of Python's "Exception ignored in ..." and nothing. Other
    unraisable errors go to the hook that was in place. For a program's process
    (deeppose/cli.py): the hook is the process's."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if caused_by_ctrl_c(unraisable.exc_value):
            # SIGINT again, from another thread: the main thread runs the handler at its next
            # check, once out of here (signal.raise_signal, os.kill and _thread.interrupt_main
            # in this thread would run it at once, in here, where it would be lost again).
            _thread.start_new_thread(os.kill, (os.getpid(), signal.SIGINT))
        else:
            previous(unraisable)

    sys.unraisablehook = hook


def ignore_ctrl_c() -> None:
    """Ignore SIGINT from now on: the exit code is decided and the process only exits. Python
    keeps an ignored SIGINT ignored while it exits (it restores the default action only where a
    Python function handled the signal), so a late Ctrl-C can neither raise in an atexit
    callback nor end the process by the signal. Main thread only (elsewhere nothing changes)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
