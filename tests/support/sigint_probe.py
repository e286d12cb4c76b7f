"""Run a script (main.py) as ``python SCRIPT ARGS...`` would, stopping at one known moment of its
life so that a test can send it SIGINT exactly then (tests/engine/test_video.py, tests/app/test_app.py):

    python tests/support/sigint_probe.py MOMENT SCRIPT ARGS...

At MOMENT the process writes the line ``@probe MOMENT`` to stdout and waits until its stdin is
closed (or gives a byte); the test sends SIGINT after reading that line and then closes stdin. A
KeyboardInterrupt therefore rises inside the wait, i.e. at that moment (or, where the process
holds Ctrl-C there, after it). MOMENT is one of:

- ``import:MODULE``: when the import system starts looking for MODULE (the first time);
- ``call:MODULE:QUALNAME``: when the function (or method ``Class.name``) is first called;
  ``call:MODULE:QUALNAME@N``: at its N-th call;
- ``atexit``: in the last atexit callback (after the program's own), before Python restores
  SIGINT's default action;
- ``teardown``: while Python destroys the modules, after it has restored that action.

Tests call :func:`run_interrupted_at`.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path


def pause(moment: str, write=os.write, read=os.read) -> None:
    """Tell the test where the process is, then wait for it (the test's SIGINT interrupts the
    wait). The functions are bound as defaults: module globals are gone during ``teardown``."""
    write(1, f"@probe {moment}\n".encode())
    read(0, 1)


class _Finder:
    """A ``sys.meta_path`` entry that pauses when MODULE is first looked for (``import:``), or
    wraps QUALNAME once MODULE is imported (``call:``)."""

    def __init__(self, module: str, qualname: str | None, moment: str):
        self.module, self.qualname, self.moment = module, qualname, moment

    def find_spec(self, name, path=None, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        if self.qualname is None:
            pause(self.moment)
            return None
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap(module, self.qualname, self.moment)

        spec.loader.exec_module = exec_and_wrap
        return spec


def _wrap(module, qualname: str, moment: str) -> None:
    qualname, _, nth = qualname.partition("@")
    *outer, name = qualname.split(".")
    owner = module
    for part in outer:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(True)
        if len(calls) == int(nth or 1):
            pause(moment)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


class _PauseWhenDestroyed:
    def __del__(self, pause=pause):
        pause("teardown")


def main() -> None:
    moment, script, *args = sys.argv[1:]
    kind, _, what = moment.partition(":")
    if kind == "import":
        sys.meta_path.insert(0, _Finder(what, None, moment))
    elif kind == "call":
        module, qualname = what.split(":")
        if module in sys.modules:
            _wrap(sys.modules[module], qualname, moment)
        else:
            sys.meta_path.insert(0, _Finder(module, qualname, moment))
    elif moment == "atexit":
        atexit.register(pause, moment)   # registered first: runs last
    elif moment == "teardown":
        sys.modules["_sigint_probe_teardown"] = type(sys)("_sigint_probe_teardown")
        sys.modules["_sigint_probe_teardown"].token = _PauseWhenDestroyed()
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))   # as `python SCRIPT` sets it
    runpy.run_path(script, run_name="__main__")


def run_interrupted_at(moment: str, script: Path, args: list[str], env: dict | None = None,
                       timeout: float = 120, sig: int | None = signal.SIGINT,
                       before_signal=None) -> tuple[int, str, str] | None:
    """``python SCRIPT ARGS`` (in the script's folder) stopped at ``moment``, SIGINT (or ``sig``;
    None: no signal) sent there once ``before_signal()``, if given, has returned (the process
    waits meanwhile, its other threads run on), then let go: (exit code, stdout, stderr); None
    when the process ended without reaching the moment. The signal lands at a known point of the process, not after a sleep, whose moment
    depends on the machine (issue 23). SIGINT starts at its default action in the process, as
    from a terminal (a background job of a non-interactive shell would ignore it)."""
    proc = subprocess.Popen([sys.executable, __file__, moment, str(script), *args], cwd=Path(script).parent, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        before = []
        for line in proc.stdout:   # ends at the marker, or at EOF if the moment never came
            before.append(line)
            if line.startswith("@probe "):
                if before_signal is not None:
                    before_signal()
                if sig is not None:
                    proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=timeout)   # closes stdin: the process goes on from the moment
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if not (before and before[-1].startswith("@probe ")):
        return None
    return proc.returncode, "".join(before) + out, err


if __name__ == "__main__":
    main()
