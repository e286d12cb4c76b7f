"""Ctrl-C at the moments ``except KeyboardInterrupt`` does not see (engine/interrupts.py): inside
native initializations (held, raised after), inside finalizers (raised again), wrapped in other
errors (recognized, never a fallback). Signals are sent inside subprocesses, not to pytest; the
whole command under SIGINT at each moment is tests/engine/test_video.py's."""
from __future__ import annotations

import subprocess
import sys

import pytest

from deeppose.engine.interrupts import caused_by_ctrl_c
from support import REPO


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter in the repository (SIGINT at its default, Python's handler)."""
    import signal
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# SIGINT sent from inside an import, as MODULE is looked for: the moment a native module starts
# to initialize (its own code gives Python no point to stop at that a test could wait for).
KICK = ("import os, signal, sys\n"
        "class Kick:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name == MODULE:\n"
        "            sys.meta_path.remove(Kick)\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Kick)\n")


def test_caused_by_ctrl_c_follows_cause_and_context():
    def wrapped(outer, inner, how):
        try:
            try:
                raise inner
            except BaseException as e:
                if how == "from":
                    raise outer from e
                if how == "from None":
                    raise outer from None
                raise outer
        except BaseException as e:
            return e

    assert caused_by_ctrl_c(KeyboardInterrupt())
    for how in ("from", "from None", "context"):   # pybind11, `raise X from None`, numpy's message
        assert caused_by_ctrl_c(wrapped(ImportError("initialization failed"), KeyboardInterrupt(), how))
        assert not caused_by_ctrl_c(wrapped(ImportError("initialization failed"), OSError("no file"), how))
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop
    assert not caused_by_ctrl_c(loop) and not caused_by_ctrl_c(None)


def test_ctrl_c_held_delivers_to_the_handler_in_place_after_the_block():
    """Held during the block; afterwards Python's handler raises KeyboardInterrupt (also over an
    error the block raised), a command's own handler is called, an ignored SIGINT stays ignored."""
    code = ("import os, signal\n"
            "from deeppose.engine.interrupts import ctrl_c_held\n"
            "steps = []\n"
            "try:\n"
            "    with ctrl_c_held():\n"
            "        signal.raise_signal(signal.SIGINT)\n"
            "        steps.append('block went on')\n"
            "except KeyboardInterrupt:\n"
            "    steps.append('raised after')\n"
            "try:\n"
            "    with ctrl_c_held():\n"
            "        signal.raise_signal(signal.SIGINT)\n"
            "        raise ImportError('initialization failed')\n"
            "except KeyboardInterrupt as e:\n"
            "    steps.append('over ' + type(e.__context__).__name__)\n"
            "signal.signal(signal.SIGINT, lambda s, f: steps.append('own handler'))\n"
            "with ctrl_c_held():\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "with ctrl_c_held():\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "print(steps)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['block went on', 'raised after', 'over ImportError', 'own handler']"


@pytest.mark.parametrize("module,load", [
    ("onnxruntime.capi.onnxruntime_pybind11_state",
     "from deeppose.engine.backends.onnxruntime_backend import OnnxRuntimeRegressor\n"
     "OnnxRuntimeRegressor('weights/flic/stage1.onnx', threads=1)\n"),
    ("ai_edge_litert._pywrap_litert_interpreter_wrapper",
     "from deeppose.engine.detection.faces import _litert_imports\n"
     "_litert_imports()\n"),
])
def test_ctrl_c_inside_a_native_import_is_raised_after_it(module, load):
    """A Ctrl-C as ONNX Runtime's or LiteRT's native module starts to initialize is held and
    raised once the import is done, never read as "not installed": raised inside, pybind11 turned
    it into ImportError("initialization failed") and a run went on with the float graphs (ONNX
    Runtime) or would have switched the face detector to MediaPipe (LiteRT), ending 0."""
    pytest.importorskip(module.split(".")[0])
    code = (f"MODULE = {module!r}\n" + KICK
            + "try:\n" + "".join("    " + line + "\n" for line in load.splitlines())
            + "except KeyboardInterrupt as e:\n"
            f"    assert {module!r} in sys.modules, 'the import was cut short'\n"
            "    print('raised after the import', type(e.__context__).__name__)\n"
            "    sys.exit(3)\n")
    proc = run_python(code)
    assert proc.returncode == 3 and proc.stdout.strip() == "raised after the import NoneType", \
        (proc.returncode, proc.stdout, proc.stderr[-2000:])


def test_ctrl_c_swallowed_by_a_finalizer_is_raised_again():
    """A KeyboardInterrupt raised inside a ``__del__`` or a weakref callback (importlib's module
    locks have one) is only printed ("Exception ignored in") and the program went on: a Ctrl-C 0.3 s
    into `main.py video` ended 0 after all frames. With the hook the command line installs it
    comes again in the code that runs next (here: the wait that follows)."""
    code = ("import os, signal, sys, time\n"
            "from deeppose.engine.interrupts import deliver_ctrl_c_from_finalizers\n"
            "if sys.argv[-1] == 'hook':\n"
            "    deliver_ctrl_c_from_finalizers()\n"
            "class Finalized:\n"
            "    def __del__(self):\n"
            "        signal.raise_signal(signal.SIGINT)   # the handler runs in here, after the call\n"
            "try:\n"
            "    Finalized()\n"
            "    time.sleep(60)\n"
            "    print('went on')\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted')\n")
    proc = subprocess.run([sys.executable, "-c", code, "hook"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, preexec_fn=_sigint_default)
    assert proc.stdout.strip() == "interrupted" and "Exception ignored" not in proc.stderr, proc.stderr[-2000:]


def _sigint_default():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_backend_error_from_a_ctrl_c_is_no_reason_to_fall_back(flic_weights, monkeypatch):
    """``auto`` falls back to PyTorch when ONNX Runtime fails to load, and the int8 stages to
    the float graphs; an error that a Ctrl-C caused goes up instead (the command ends 130)."""
    from deeppose.engine import backends
    from deeppose.engine.backends import BackendError, create_regressors
    from deeppose.engine.backends import onnxruntime_backend as ortb
    from deeppose.engine.model import read_manifest

    info = read_manifest(flic_weights)
    assert ortb.int8_record(info.manifest)[0], "the shipped model runs a stage in int8 by default"
    real = ortb.OnnxRuntimeRegressor

    def interrupted_loading(which):
        def load(path, *args, **kwargs):
            if which == "all" or str(path).endswith(ortb.INT8_SUFFIX):
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt:   # as the import's ImportError became one
                    raise BackendError("onnxruntime is not installed: initialization failed") from None
            return real(path, *args, **kwargs)
        return load

    monkeypatch.setattr(backends, "_torch_regressors", lambda *a, **k: pytest.fail("fell back to PyTorch"))
    for backend, which in (("auto", "all"), ("onnxruntime", "int8")):
        monkeypatch.setattr(ortb, "OnnxRuntimeRegressor", interrupted_loading(which))
        with pytest.raises(BackendError) as e:   # not PyTorch, not the float graphs
            create_regressors(info, backend, threads=1)
        assert caused_by_ctrl_c(e.value)
