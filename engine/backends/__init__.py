"""Runtime backends implementing the cascade's :class:`engine.cascade.Regressor` interface.

Backends (one name each, chosen with ``--backend``):

- ``torch``: PyTorch on the CPU (fp32), or on CUDA in fp16 when a GPU is present.
- ``onnxruntime`` (alias ``ort``): ONNX Runtime on the CPU, one session per stage with all
  graph optimizations and one thread per physical core. Each stage is exported to ONNX once
  and cached next to the weights (see :mod:`engine.backends.onnxruntime_backend`).
- ``tensorrt`` (alias ``trt``): TensorRT engines built by ``python main.py build-engines``
  (optional import; needs an NVIDIA GPU; see :mod:`engine.backends.tensorrt_backend`).
- ``auto``: the fastest one available here (:func:`resolve_backend` says which and why).

Every regressor made here carries ``backend`` (its backend name) and ``description`` (one
line naming the library version, device, precision and threads), so that every command can
print what it runs on (:func:`describe_regressors`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from ..model import ModelInfo

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")
"""Backend names, in no particular order (see :func:`resolve_backend` for the automatic choice)."""
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
CHOICES = ("auto",) + BACKENDS + tuple(ALIASES)
"""Every name accepted by ``--backend``."""


NO_GPU = ("TensorRT needs an NVIDIA GPU with CUDA, and none was found (PyTorch sees no CUDA device; "
          "on a GPU machine install the CUDA build of torch)")
"""Why TensorRT cannot run on a machine without a usable NVIDIA GPU."""


class BackendError(ModelError):
    """A backend that cannot run here or cannot load this model; the message is one line."""


def canonical_name(name: str) -> str:
    """``"ort"`` -> ``"onnxruntime"`` etc.; raises :class:`BackendError` for an unknown name."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key != "auto" and key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(('auto',) + BACKENDS)}")
    return key


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads not counted); at least 1.

    Reads the core/package ids of the CPUs in the process's affinity mask from
    /proc/cpuinfo (Linux); elsewhere falls back to ``os.cpu_count()``.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        cores: set[tuple[str, str]] = set()
        proc = phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in list(f) + [""]:
                if not line.strip():
                    if proc is not None and (allowed is None or proc in allowed):
                        cores.add((phys or "0", core if core is not None else str(proc)))
                    proc = phys = core = None
                    continue
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    proc = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
        if cores:
            return len(cores)
    except (OSError, ValueError):
        pass
    return max(1, len(allowed) if allowed else (os.cpu_count() or 1))


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
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
    status["torch"] = (True, "PyTorch on CUDA (fp16)" if cuda else "PyTorch on the CPU (fp32)")
    if _has_module("onnxruntime") and _has_module("onnx"):
        status["onnxruntime"] = (True, "ONNX Runtime on the CPU")
    else:
        status["onnxruntime"] = (False, "onnxruntime or onnx is not installed (pip install onnxruntime onnx)")
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
    return "torch", f"auto: no CUDA GPU, and {status['onnxruntime'][1]}; using PyTorch on the CPU"


def _label(regressors: list, backend: str, reason: str) -> list:
    for r in regressors:
        r.backend = backend
        r.backend_reason = reason
        if not getattr(r, "description", None):
            r.description = backend
    return regressors


def _torch_regressors(info: "ModelInfo", device: str | None = None, fp16: bool | None = None,
                      threads: int | None = None) -> list:
    import torch

    from ..model import load_stage_module
    from .torch_backend import TorchRegressor
    if threads:
        torch.set_num_threads(int(threads))
    out = []
    for f in info.stage_files:
        r = TorchRegressor(load_stage_module(f, info.skeleton.k), device=device, fp16=fp16)
        where = str(r.device) if r.device.type == "cpu" else f"{r.device} {torch.cuda.get_device_name(r.device)}"
        threads_txt = f", {torch.get_num_threads()} threads" if r.device.type == "cpu" else ""
        r.description = f"torch {torch.__version__} ({where}, {'fp16' if r.fp16 else 'fp32'}{threads_txt})"
        out.append(r)
    return out


def create_regressors(info: "ModelInfo", backend: str = "auto", **opts: Any) -> list:
    """One regressor per stage of the model ``info`` on ``backend``, stage 1 first.

    Each regressor loads its network once, keeps its buffers, and runs a whole stage's batch
    (all persons; at stages >= 2 all persons x k joint crops) in one call.

    Args:
        info: the model (:func:`engine.model.read_manifest`).
        backend: a name of :data:`CHOICES`; ``auto`` resolves with :func:`resolve_backend`
            and, if ONNX Runtime or TensorRT then fail to load, falls back to PyTorch (the
            reason says so).
        **opts: backend options. torch: ``device`` ("cpu"/"cuda"), ``fp16``, ``threads``.
            onnxruntime: ``threads`` (default: physical cores), ``spinning``, ``cache_dir``.
            tensorrt: ``precision`` ("fp16"/"fp32"), ``device``.
    Returns:
        list of regressors with ``backend``, ``backend_reason`` and ``description`` set.
    Raises:
        BackendError: unknown or unavailable backend, or a backend that cannot load this
            model (missing engines, export failure); one line, with the fix where known.
        ModelError: unreadable checkpoints.
    """
    key = canonical_name(backend)
    if key == "auto":
        name, reason = resolve_backend("auto", info.folder, opts.get("precision"))
        try:
            return _label(create_regressors(info, name, **_opts_for(name, opts)), name, reason)
        except BackendError as e:
            if name == "torch":
                raise
            reason = f"auto: {name} failed to load ({e}); using PyTorch"
            log.warning("%s", reason)
            return _label(_torch_regressors(info, **_opts_for("torch", opts)), "torch", reason)
    name, reason = resolve_backend(key)
    if name == "torch":
        regs = _torch_regressors(info, **_opts_for("torch", opts))
    elif name == "onnxruntime":
        from .onnxruntime_backend import create_onnxruntime_regressors
        regs = create_onnxruntime_regressors(info, **_opts_for("onnxruntime", opts))
    else:
        from .tensorrt_backend import create_tensorrt_regressors
        regs = create_tensorrt_regressors(info, **_opts_for("tensorrt", opts))
    return _label(regs, name, reason)


_OPTIONS = {
    "torch": ("device", "fp16", "threads"),
    "onnxruntime": ("threads", "spinning", "cache_dir"),
    "tensorrt": ("precision", "device"),
}


def _opts_for(name: str, opts: dict) -> dict:
    """The options of ``opts`` that backend ``name`` takes (``auto`` passes options for all)."""
    return {k: v for k, v in opts.items() if k in _OPTIONS[name] and v is not None}


def describe_regressors(regressors: list) -> str:
    """One line naming the backend a cascade runs on, e.g.
    ``"onnxruntime 1.31.1 (CPUExecutionProvider, 2 threads) [auto: no CUDA GPU; ...]"``.

    Works for any regressors (those of ``engine.model.load_cascade(folder, "torch")`` too).
    """
    if not regressors:
        return "no regressors"
    r = regressors[0]
    desc = getattr(r, "description", None)
    if not desc and getattr(r, "name", None) == "torch" and hasattr(r, "device"):
        import torch  # a TorchRegressor made by engine.model.load_cascade(folder, "torch")
        cpu = r.device.type == "cpu"
        desc = (f"torch {torch.__version__} ({r.device}, {'fp16' if getattr(r, 'fp16', False) else 'fp32'}"
                f"{f', {torch.get_num_threads()} threads' if cpu else ''})")
    desc = desc or getattr(r, "name", None) or type(r).__name__
    reason = getattr(r, "backend_reason", "")
    return f"{desc} [{reason}]" if reason.startswith("auto") else desc
