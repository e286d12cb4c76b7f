"""TensorRT backend (optional import): one serialized engine per stage, built from its ONNX graph.

Engines are built at build time by ``python main.py build-engines`` (:mod:`tools.export.build_engines`)
and kept next to the weights, one file per stage, keyed by what they were built for::

    stage1.fp16.sm89-nvidia-geforce-rtx-4090.trt10.8.0.engine
    stage1.fp16.sm89-nvidia-geforce-rtx-4090.trt10.8.0.engine.json   (metadata)

The metadata records the TensorRT version, GPU name and compute capability, precision, the
optimization profile's batch sizes, and the SHA-256 of the ONNX file and of the checkpoint.
An engine only runs with the TensorRT version and GPU it was built for: loading engines built
elsewhere, or from an older checkpoint, raises a one-line :class:`BackendError` naming the
difference and the rebuild command.

TensorRT use follows its current Python API (TensorRT >= 10): strongly typed networks (fp16
engines are built from an fp16 copy of the ONNX graph), one optimization profile over the
batch sizes the cascade uses (any B >= 1), tensors addressed by name
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). Device buffers are
PyTorch CUDA tensors.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..interrupts import ctrl_c_held
from .base import NO_GPU, BackendError, Regressor
from .common import default_cache_dir, file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from ..model import ModelInfo

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
DEFAULT_MAX_PERSONS = 8
"""Default largest number of persons per frame an engine accepts (stage 1 batch; stages >= 2: x k)."""


@dataclass(frozen=True)
class TrtEnvironment:
    """What a TensorRT engine is specific to: the TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu_name} (sm_{self.compute_capability.replace('.', '')})"


def current_environment(device: str | None = None) -> TrtEnvironment:
    """The TensorRT version and the CUDA GPU (``device``, default the current one) of this machine.

    Raises:
        BackendError: tensorrt not installed, or no CUDA GPU.
    """
    import torch
    if not torch.cuda.is_available():
        raise BackendError(NO_GPU)
    try:
        with ctrl_c_held():   # a Ctrl-C inside its native initialization is no "not installed" (engine.interrupts)
            import tensorrt as trt
    except ImportError as e:
        raise BackendError(f"TensorRT is not installed ({e}); install it from NVIDIA's index: pip install tensorrt") from None
    dev = torch.device(device or "cuda")
    major, minor = torch.cuda.get_device_capability(dev)
    return TrtEnvironment(trt.__version__, torch.cuda.get_device_name(dev), f"{major}.{minor}")


def engine_key(env: TrtEnvironment, precision: str) -> str:
    """Cache key of an engine: precision, compute capability, GPU name and TensorRT version,
    e.g. ``"fp16.sm89-nvidia-geforce-rtx-4090.trt10.8.0"`` (file-name safe)."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown TensorRT precision {precision!r}; choose one of {PRECISIONS}")
    gpu = re.sub(r"[^a-z0-9]+", "-", env.gpu_name.lower()).strip("-") or "gpu"
    cc = env.compute_capability.replace(".", "")
    ver = re.sub(r"[^0-9A-Za-z.]+", "-", env.tensorrt_version)
    return f"{precision}.sm{cc}-{gpu}.trt{ver}"


def engine_path(checkpoint: str | Path, folder: str | Path, env: TrtEnvironment, precision: str) -> Path:
    """Engine file of one stage checkpoint: ``<folder>/<stem>.<engine_key>.engine``."""
    return Path(folder) / f"{Path(checkpoint).stem}.{engine_key(env, precision)}.engine"


def metadata_path(engine: str | Path) -> Path:
    """The JSON metadata file written beside an engine file."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def rebuild_command(folder: str | Path, precision: str = "fp16", max_persons: int | None = None) -> str:
    """The command that (re)builds a model folder's engines."""
    cmd = f"python main.py build-engines --weights {folder} --precision {precision}"
    return cmd + (f" --max-batch {max_persons}" if max_persons else "")


def check_metadata(meta: dict, env: TrtEnvironment, precision: str, checkpoint_sha256: str | None,
                   folder: str | Path) -> str | None:
    """Why an engine with metadata ``meta`` cannot run here, as one line ending in the rebuild
    command; None when it matches this TensorRT version, GPU, precision and checkpoint."""
    try:
        built = TrtEnvironment(str(meta["tensorrt_version"]), str(meta["gpu_name"]), str(meta["compute_capability"]))
        built_precision = str(meta["precision"])
    except (KeyError, TypeError):
        return f"TensorRT engine metadata in {folder} is incomplete; rebuild with: {rebuild_command(folder, precision)}"
    cmd = rebuild_command(folder, precision, meta.get("max_persons"))
    if built.tensorrt_version != env.tensorrt_version:
        return (f"the TensorRT engines in {folder} were built with TensorRT {built.tensorrt_version}, this machine has "
                f"TensorRT {env.tensorrt_version}; rebuild them with: {cmd}")
    if (built.gpu_name, built.compute_capability) != (env.gpu_name, env.compute_capability):
        return (f"the TensorRT engines in {folder} were built for {built.gpu_name} (sm_"
                f"{built.compute_capability.replace('.', '')}), this machine has {env.gpu_name} (sm_"
                f"{env.compute_capability.replace('.', '')}); rebuild them with: {cmd}")
    if built_precision != precision:
        return f"the TensorRT engines in {folder} are {built_precision}, not {precision}; build them with: {cmd}"
    if checkpoint_sha256 and meta.get("checkpoint_sha256") != checkpoint_sha256:
        return (f"the TensorRT engines in {folder} were built from an older checkpoint "
                f"({meta.get('checkpoint', '?')} changed); rebuild them with: {cmd}")
    return None


def _engine_dirs(info_folder: Path) -> list[Path]:
    return [info_folder, default_cache_dir(info_folder, "engines")]


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(metadata_path(path).read_text())
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def find_engines(info: "ModelInfo", precision: str = "fp16", env: TrtEnvironment | None = None) -> list[tuple[Path, dict]]:
    """The engine file and metadata of every stage of ``info`` built for this machine.

    Raises:
        BackendError: (one line, with the rebuild command) TensorRT or the GPU is missing, an
            engine is missing, or was built for another TensorRT version, GPU, precision or
            checkpoint.
    """
    env = env or current_environment()
    folder = info.folder
    found = []
    for ckpt in info.stage_files:
        candidates = [engine_path(ckpt, d, env, precision) for d in _engine_dirs(folder)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            others = sorted(p for d in _engine_dirs(folder) if d.is_dir() for p in d.glob(f"{ckpt.stem}.*.engine"))
            for other in others:
                meta = _read_meta(other)
                problem = check_metadata(meta, env, precision, None, folder) if meta else None
                if problem:
                    raise BackendError(problem)
            raise BackendError(f"no TensorRT engine for {ckpt.name} ({precision}, {env.describe()}) in {folder}; "
                               f"build them with: {rebuild_command(folder, precision)}")
        meta = _read_meta(path)
        if meta is None:
            raise BackendError(f"{metadata_path(path)} is missing or unreadable; rebuild with: "
                               f"{rebuild_command(folder, precision)}")
        problem = check_metadata(meta, env, precision, file_sha256(ckpt) if ckpt.is_file() else None, folder)
        if problem:
            raise BackendError(problem)
        found.append((path, meta))
    return found


def engines_problem(folder: str | Path, precision: str = "fp16") -> str | None:
    """None when ``folder``'s engines can run here, else the one-line reason (never raises)."""
    from ..model import ModelError, read_manifest
    try:
        find_engines(read_manifest(folder), precision)
        return None
    except ModelError as e:  # BackendError is a ModelError
        return str(e)


class TensorRTRegressor(Regressor):
    """:class:`engine.backends.base.Regressor` running one stage's TensorRT engine.

    The engine is deserialized once; input and output live in PyTorch CUDA tensors (and pinned
    host tensors for the copies) allocated once for the profile's largest batch; every call
    sets the batch's input shape and runs ``execute_async_v3`` on a private CUDA stream. A
    batch larger than the profile's maximum (``max_batch``) runs in chunks.

    Args:
        path: the .engine file.
        device: CUDA device (default "cuda").
        rebuild_hint: command printed when the engine cannot be deserialized.
        reason: why this backend was chosen (see :class:`Regressor`).
    Raises:
        BackendError: TensorRT missing, or the engine cannot be deserialized here.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str | None = None, rebuild_hint: str = "", reason: str = ""):
        try:
            with ctrl_c_held():
                import tensorrt as trt
        except ImportError as e:
            raise BackendError(f"TensorRT is not installed ({e})") from None
        import torch

        self.path = Path(path)
        self.device = torch.device(device or "cuda")
        self._logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT {trt.__version__} cannot load {self.path.name} (built with another "
                               f"TensorRT version or GPU?); rebuild with: {rebuild_hint or 'python main.py build-engines'}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(self.input, 0)
        if int(min_shape[0]) != 1:
            raise BackendError(f"the TensorRT engine {self.path.name} does not take a batch of 1 (profile starts at "
                               f"{int(min_shape[0])}); rebuild with: {rebuild_hint or 'python main.py build-engines'}")
        max_batch = int(max_shape[0])
        self.input_side = int(max_shape[-1])
        in_shape = tuple(int(d) for d in max_shape)
        out_shape = (max_batch, int(self.engine.get_tensor_shape(self.output)[1]))
        dt = {name: torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
              for name in (self.input, self.output)}
        cuda = self.device.type == "cuda"
        self.d_in = torch.empty(in_shape, dtype=dt[self.input], device=self.device)
        self.d_out = torch.empty(out_shape, dtype=dt[self.output], device=self.device)
        self.h_in = torch.empty(in_shape, dtype=torch.float32, pin_memory=cuda)
        self.h_out = torch.empty(out_shape, dtype=torch.float32, pin_memory=cuda)
        self.context.set_tensor_address(self.input, self.d_in.data_ptr())
        self.context.set_tensor_address(self.output, self.d_out.data_ptr())
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        gpu = torch.cuda.get_device_name(self.device) if cuda else str(self.device)
        precision = str((_read_meta(self.path) or {}).get("precision", "?"))
        super().__init__(f"tensorrt {trt.__version__} ({gpu}, {precision})", max_batch, reason)

    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, 2k) float32 normalized coordinates, in chunks of ``max_batch``."""
        self._check_open()
        crops = np.ascontiguousarray(crops, dtype=np.float32)
        out = np.empty((len(crops), self.h_out.shape[1]), np.float32)
        for i in range(0, len(crops), self.max_batch):
            self._run(crops[i:i + self.max_batch], out[i:i + self.max_batch])
        return out

    def _run(self, x: np.ndarray, out: np.ndarray) -> None:
        import torch

        n = len(x)
        self.h_in[:n].numpy()[...] = x
        handle = self.stream.cuda_stream if self.stream is not None else 0
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            self.d_in[:n].copy_(self.h_in[:n], non_blocking=True)
            self.context.set_input_shape(self.input, (n, *x.shape[1:]))
            if not self.context.execute_async_v3(handle):
                raise BackendError(f"TensorRT execution of {self.path.name} failed (batch {n})")
            self.h_out[:n].copy_(self.d_out[:n], non_blocking=True)
        if self.stream is not None:
            self.stream.synchronize()
        out[...] = self.h_out[:n].numpy()

    def _release(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()
        self.context = self.engine = self.runtime = None
        self.d_in = self.d_out = self.h_in = self.h_out = self.stream = None


def create_tensorrt_regressors(info: "ModelInfo", precision: str = "fp16", device: str | None = None,
                               reason: str = "") -> list[TensorRTRegressor]:
    """One :class:`TensorRTRegressor` per stage of ``info``, from engines built for this machine.

    Raises:
        BackendError: see :func:`find_engines` and :class:`TensorRTRegressor`.
    """
    engines = find_engines(info, precision, current_environment(device))
    hint = rebuild_command(info.folder, precision)
    return [TensorRTRegressor(path, device, hint, reason) for path, _ in engines]
