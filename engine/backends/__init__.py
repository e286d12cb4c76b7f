"""Runtime backends implementing the contract of :class:`engine.backends.base.Regressor`.

Backends (one name each, chosen with ``--backend``):

- ``torch``: PyTorch on the CPU (fp32), or on CUDA in fp16 when a GPU is present.
- ``onnxruntime`` (alias ``ort``): ONNX Runtime on the CPU, one session per stage with all
  graph optimizations and one thread per physical core, loading the ONNX files the model
  folder names (written at build time by ``python main.py export-onnx``; see
  :mod:`engine.backends.onnxruntime_backend`). Needs neither torch nor onnx.
- ``tensorrt`` (alias ``trt``): TensorRT engines built by ``python main.py build-engines``
  (optional import; needs an NVIDIA GPU; see :mod:`engine.backends.tensorrt_backend`).
- ``auto``: the fastest one available here (:func:`resolve_backend` says which and why).

Every regressor made here is an :class:`engine.backends.base.Regressor`: its ``name``,
``description`` (one line naming the library version, device, precision and threads),
``max_batch`` and ``reason`` (why it was chosen) are set when it is created, so that every
command can print what it runs on (:func:`describe_regressors`); ``close()`` releases it.

Importing this package imports no backend library: torch, onnxruntime and tensorrt are
imported by the backend that is created (and torch, to ask about CUDA, only on a machine with
an NVIDIA device). :func:`load_cascade` turns a model folder into a ready cascade.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from ..cascade import Cascade
from ..constants import BACKEND_CHOICES as CHOICES  # noqa: F401 (the names --backend takes, for callers)
from ..constants import BACKEND_OPTIONS, BACKENDS, backend_key
from ..interrupts import caused_by_ctrl_c
from ..model import ModelError, ModelInfo, read_manifest
from .base import NO_GPU, BackendError, Regressor
from .common import physical_cores  # noqa: F401 (part of this package's interface)

log = logging.getLogger(__name__)


def canonical_name(name: str) -> str:
    """``"ort"`` -> ``"onnxruntime"`` etc.; raises :class:`BackendError` for an unknown name."""
    key = backend_key(name)
    if key != "auto" and key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(('auto',) + BACKENDS)}")
    return key


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _nvidia_device_absent() -> bool:
    """True when this is Linux and no NVIDIA device node exists (then CUDA cannot be there)."""
    return sys.platform.startswith("linux") and not any(Path("/dev").glob("nvidia[0-9]*"))


def _cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU. Imports torch only when it is installed and, on Linux,
    an NVIDIA device exists, so that CPU-only runs never pay torch's import."""
    if not _has_module("torch") or _nvidia_device_absent():
        return False
    import torch
    return torch.cuda.is_available()


def backend_status() -> dict[str, tuple[bool, str]]:
    """For each backend: (available here, one-line reason).

    Cheap: checks imports and CUDA, loads no model. TensorRT counts as available when the
    ``tensorrt`` package imports and a CUDA GPU is visible to PyTorch (its engines must still
    be built for the model: see :func:`engine.backends.tensorrt_backend.find_engines`).
    """
    status: dict[str, tuple[bool, str]] = {}
    cuda = _cuda_available()
    if _has_module("torch"):
        status["torch"] = (True, "PyTorch on CUDA (fp16)" if cuda else "PyTorch on the CPU (fp32)")
    else:
        status["torch"] = (False, "PyTorch is not installed (pip install 'deeppose[train]')")
    if _has_module("onnxruntime"):
        status["onnxruntime"] = (True, "ONNX Runtime on the CPU")
    else:
        status["onnxruntime"] = (False, "onnxruntime is not installed (pip install onnxruntime)")
    if not cuda:   # said first: without a GPU, installing tensorrt would not help
        status["tensorrt"] = (False, NO_GPU)
    elif not _has_module("tensorrt"):
        status["tensorrt"] = (False, "the tensorrt package is not installed (NVIDIA's index: pip install tensorrt)")
    else:
        status["tensorrt"] = (True, "TensorRT on the GPU")
    return status


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, fastest first.

    Order: on a CUDA machine tensorrt, torch (CUDA fp16), onnxruntime (CPU); on a CPU-only
    machine onnxruntime, then torch (ONNX Runtime's networks ran 2.8x (batch 1) and 1.9x
    (batch 11) faster than PyTorch's on the 2-core CPU of docs/SPEED.md).
    """
    status = backend_status()
    order = ("tensorrt", "torch", "onnxruntime") if _cuda_available() else ("onnxruntime", "torch", "tensorrt")
    return [name for name in order if status[name][0]]


def resolve_backend(name: str = "auto", folder: str | Path | None = None, precision: str | None = None) -> tuple[str, str]:
    """Turn a ``--backend`` value into a concrete backend name, with the reason for it.

    ``auto`` picks the fastest backend available here: TensorRT when it is installed, a GPU
    is present and engines for this GPU, TensorRT version and model are built (checked only
    when ``folder`` is given); else PyTorch fp16 on CUDA; else ONNX Runtime on the CPU; else
    PyTorch on the CPU. A named backend is checked for availability.

    Args:
        name: a name of :data:`CHOICES`.
        folder: the model folder (lets ``auto`` check for built TensorRT engines).
        precision: TensorRT engine precision to look for, "fp16" (default) or "fp32".
    Returns:
        (backend name, one-line reason).
    Raises:
        BackendError: unknown name, or a named backend that is not available here.
    """
    key = canonical_name(name)
    status = backend_status()
    if key != "auto":
        ok, why = status[key]
        if not ok:
            raise BackendError(f"backend {key} is not available here: {why}")
        return key, f"asked for ({why})"
    if _cuda_available():
        ok, why = status["tensorrt"]
        if ok and folder is not None:
            from .tensorrt_backend import engines_problem
            problem = engines_problem(folder, precision or "fp16")
            if problem is None:
                return "tensorrt", "auto: TensorRT engines built for this GPU are the fastest backend"
            why = problem
        elif ok:
            why = "no model folder given to look for engines"
        return "torch", f"auto: PyTorch CUDA fp16 (TensorRT not used: {why})"
    if status["onnxruntime"][0]:
        return "onnxruntime", ("auto: no CUDA GPU; ONNX Runtime is the fastest CPU backend "
                               "(its networks ran 1.9x to 2.8x faster than PyTorch's on 2 cores, docs/SPEED.md)")
    if not status["torch"][0]:
        raise BackendError(f"no backend can run here: {status['onnxruntime'][1]}, and {status['torch'][1]}")
    return "torch", f"auto: no CUDA GPU, and {status['onnxruntime'][1]}; using PyTorch on the CPU"


def _torch_regressors(info: ModelInfo, device: str | None = None, fp16: bool | None = None,
                      threads: int | None = None, reason: str = "") -> list[Regressor]:
    import torch

    from ..model import load_stage_module
    from .torch_backend import TorchRegressor
    if threads:
        torch.set_num_threads(int(threads))
    return [TorchRegressor(load_stage_module(f, info.skeleton.k), device, fp16, reason) for f in info.stage_files]


def create_regressors(info: ModelInfo, backend: str = "auto", **opts: Any) -> list[Regressor]:
    """One regressor per stage of the model ``info`` on ``backend``, stage 1 first.

    Each regressor loads its network once, keeps its buffers, and runs a whole stage's batch
    (all persons; at stages >= 2 all persons x k joint crops) in one call.

    Args:
        info: the model (:func:`engine.model.read_manifest`).
        backend: a name of :data:`CHOICES`; ``auto`` resolves with :func:`resolve_backend`
            and, if ONNX Runtime or TensorRT then fail to load, falls back to PyTorch (the
            reason says so); with ``int8`` asked for (True or stage numbers) it is ONNX Runtime.
        **opts: backend options (:data:`engine.constants.BACKEND_OPTIONS`; None: the backend's
            default). torch: ``device`` ("cpu"/"cuda"), ``fp16``, ``threads``.
            onnxruntime: ``threads`` (default: physical cores), ``spinning``, ``int8`` (True:
            the stages' int8 copies, tools/export/quantize_int8.py; False: the float graphs; None or
            absent: int8 where the model's int8 record passes, see
            :func:`engine.backends.onnxruntime_backend.create_onnxruntime_regressors`).
            tensorrt: ``precision`` ("fp16"/"fp32"), ``device``. ``auto`` takes every backend's
            options and hands the chosen one its own; a named backend refuses another's
            (:func:`backend_option_problem`).
    Returns:
        one :class:`Regressor` per stage, their ``reason`` saying why the backend was chosen.
    Raises:
        BackendError: unknown or unavailable backend, an option it does not take (one line
            naming the option and the backend), or a backend that cannot load this
            model (missing or stale ONNX files or engines); one line, with the fix where known.
        ModelError: missing or unreadable checkpoints (torch).
    """
    key = canonical_name(backend)
    check_backend_options(key, opts)
    if key == "auto" and opts.get("int8"):   # int8 copies asked for: they are ONNX Runtime's
        key = "onnxruntime"
    if key == "auto":
        name, reason = resolve_backend("auto", info.folder, opts.get("precision"))
        try:
            return _create(info, name, reason, opts)
        except BackendError as e:
            if name == "torch" or caused_by_ctrl_c(e) or not backend_status()["torch"][0]:
                raise
            reason = f"auto: {name} failed to load ({e}); using PyTorch"
            log.warning("%s", reason)
            return _create(info, "torch", reason, opts)
    name, reason = resolve_backend(key)
    return _create(info, name, reason, opts)


def _create(info: ModelInfo, name: str, reason: str, opts: dict) -> list[Regressor]:
    """The regressors of backend ``name`` (a canonical, available name)."""
    if name == "torch":
        return _torch_regressors(info, **_opts_for("torch", opts), reason=reason)
    if name == "onnxruntime":
        from .onnxruntime_backend import create_onnxruntime_regressors
        return create_onnxruntime_regressors(info, **_opts_for("onnxruntime", opts), reason=reason)
    from .tensorrt_backend import create_tensorrt_regressors
    return create_tensorrt_regressors(info, **_opts_for("tensorrt", opts), reason=reason)


def backend_option_problem(backend: str, name: str, value: Any) -> str | None:
    """None if backend ``backend`` (a ``--backend`` name, ``auto`` included) takes option
    ``name`` with ``value``, else one line naming the option and the backend.

    An option no backend takes is always a problem. A named backend takes its own options
    (:data:`engine.constants.BACKEND_OPTIONS`) and an option of another backend only when it asks
    for nothing (None or False: e.g. ``int8=False`` for torch, which runs the float networks
    anyway); ``auto`` takes every backend's options and hands the one it picks its own.
    """
    key = backend_key(backend)
    known = sorted({o for opts in BACKEND_OPTIONS.values() for o in opts})
    if name not in known:
        return f"unknown backend option {name!r} (for backend {key}); the backends take: {', '.join(known)}"
    if key == "auto" or key not in BACKEND_OPTIONS or name in BACKEND_OPTIONS[key]:
        return None
    if value is None or value is False:
        return None
    owners = [b for b, opts in BACKEND_OPTIONS.items() if name in opts]
    return (f"backend {key} takes no option {name}={value!r} (an option of {' and '.join(owners)}); "
            f"{key} takes: {', '.join(BACKEND_OPTIONS[key])}")


def check_backend_options(backend: str, opts: dict) -> None:
    """Raise :class:`BackendError` (one line, naming the option and the backend) for the first
    option of ``opts`` that ``backend`` does not take (:func:`backend_option_problem`)."""
    for name, value in opts.items():
        problem = backend_option_problem(backend, name, value)
        if problem:
            raise BackendError(problem)


def _opts_for(name: str, opts: dict) -> dict:
    """The options of ``opts`` (checked by :func:`check_backend_options`) that backend ``name``
    takes, those given as None left out (the backend's default)."""
    return {k: v for k, v in opts.items() if k in BACKEND_OPTIONS[name] and v is not None}


def int8_stage_numbers(regressors: "list[Regressor]") -> list[int]:
    """The 1-based stages whose regressor runs an int8 copy of its network (``Regressor.int8``)."""
    return [s for s, reg in enumerate(regressors, start=1) if reg.int8]


def describe_regressors(regressors: "list[Regressor]", reason: bool = True) -> str:
    """One line naming the backend a cascade runs on, e.g.
    ``"onnxruntime 1.31.1 (CPU, 2 threads, int8 stage 3) [auto: no CUDA GPU; ...]"``: stage 1's
    description, the int8 stages (``int8`` when all are), and with ``reason`` why ``auto`` chose
    the backend (where it did); "no regressors" for an empty list.
    """
    if not regressors:
        return "no regressors"
    r = regressors[0]
    text = r.description
    int8 = int8_stage_numbers(regressors)
    if int8 and text.endswith(")"):
        what = "int8" if len(int8) == len(regressors) else \
            f"int8 stage{'s' if len(int8) > 1 else ''} {', '.join(map(str, int8))}"
        text = f"{text[:-1]}, {what})"
    return f"{text} [{r.reason}]" if reason and r.reason.startswith("auto") else text


def load_cascade(folder: str | Path, backend: str = "torch", **backend_options: Any) -> tuple[Cascade, ModelInfo]:
    """Load a model folder as a :class:`engine.cascade.Cascade` on the given backend.

    Args:
        folder: model folder (manifest.json plus the stage files the backend reads).
        backend: "torch" (default: the training-time reference), "auto" (the fastest
            available), "onnxruntime" or "tensorrt".
        **backend_options: see :func:`create_regressors`.
    Returns:
        (cascade, model info).
    Raises:
        ModelError: unreadable manifest or stage files; BackendError (a ModelError): see
            :func:`create_regressors`.
    """
    info = read_manifest(folder)
    _ = info.stage_input_sizes, info.stage_follow   # a bad stage entry fails before any backend loads
    return cascade_from(info, create_regressors(info, backend, **backend_options)), info


def cascade_from(info: ModelInfo, regressors: list) -> Cascade:
    """The :class:`engine.cascade.Cascade` of a model's stage regressors (one per stage, as
    :func:`create_regressors` gives them): the manifest's sigma, crop sides, joint subsets (and
    followers) and pixel normalization.

    Raises:
        ModelError: a network takes crops of another side than its stage entry's ``input_size``
            (the regressors are closed first), or a bad stage entry (``ModelInfo``).
    """
    sizes = info.stage_input_sizes
    for s, (reg, size) in enumerate(zip(regressors, sizes), start=1):
        side = reg.input_side
        if side is not None and side != size:
            for r in regressors:
                r.close()
            raise ModelError(f"{info.folder}: stage {s}'s network takes {side}-pixel crops, the manifest says "
                             f"{size} (its stage entry's 'input_size')")
    return Cascade(regressors, info.skeleton, info.sigma, sizes, normalization=info.normalization,
                   stage_joints=info.stage_joints, stage_follow=info.stage_follow)
