"""ONNX Runtime backend (CPU), and the ONNX export of stage checkpoints that it and TensorRT share.

Export: each stage's :class:`engine.network.PoseRegressor` (fp32, eval mode) becomes one ONNX
graph with input ``crops`` float32 (B, 3, 220, 220) and output ``coords`` float32 (B, 2k),
B a dynamic axis (named ``persons`` at stage 1 and ``persons_x_k`` at stages >= 2, as stage
s >= 2 regresses the k joint crops of every person in one batch). The opset and the
checkpoint's SHA-256 are written into the graph's metadata. ONNX Runtime's graph
optimizations fold the batch norms into the convolutions.

Cache: the files are kept next to the weights as ``stage1.<sha>.onnx`` (``<sha>``: the first
16 hex digits of the checkpoint's SHA-256), so a changed checkpoint is exported again; a
read-only model folder is cached under ``$XDG_CACHE_HOME/deeppose/onnx`` instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from . import physical_cores
from .base import BackendError, Regressor
from .common import INPUT_NAME, OUTPUT_NAME, default_cache_dir, file_sha256, is_writable

if TYPE_CHECKING:  # pragma: no cover
    from ..model import ModelInfo

log = logging.getLogger(__name__)

OPSET = 18
"""ONNX opset of exported graphs (supported by ONNX Runtime >= 1.14 and TensorRT >= 8.6)."""
PARITY_TOLERANCE = 1e-4
"""Largest allowed |PyTorch - ONNX Runtime| difference, in normalized coordinates."""


def default_exporter() -> str:
    """``"dynamo"`` (torch.export-based, PyTorch's default) when onnxscript is installed,
    else ``"torchscript"`` (PyTorch's legacy exporter)."""
    import importlib.util
    return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' deprecation warnings and their INFO/WARNING log lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_stage_onnx(module, path: str | Path, batch_name: str = "batch", opset: int = OPSET,
                      exporter: str | None = None, metadata: dict | None = None,
                      verify: bool = True) -> dict:
    """Export one stage's network psi to ONNX with a dynamic batch axis.

    Args:
        module: a :class:`engine.network.PoseRegressor`; exported as fp32 in eval mode (a
            copy is made, ``module`` is left as it was).
        path: the .onnx file to write (written to a temporary name, then renamed).
        batch_name: name of the dynamic batch axis ("persons" or "persons_x_k").
        opset: ONNX opset version.
        exporter: "dynamo" or "torchscript" (default: :func:`default_exporter`).
        metadata: extra string key/values stored in the graph's metadata.
        verify: run the file with ONNX Runtime on a batch of 3 and compare with PyTorch.
    Returns:
        the metadata written (opset, exporter, torch version, batch axis, ...).
    Raises:
        BackendError: the export failed, or its output differs from PyTorch by more than
            :data:`PARITY_TOLERANCE`.
    """
    import copy

    import onnx
    import torch

    path = Path(path)
    exporter = exporter or default_exporter()
    net = copy.deepcopy(module).float().eval().cpu()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(3, 3, net.config()["input_size"], net.config()["input_size"], generator=gen)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with _quiet_export(), torch.no_grad():
            if exporter == "dynamo":
                batch = torch.export.Dim(batch_name, min=1, max=65536)
                program = torch.onnx.export(net, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                            dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True,
                                            optimize=True, verbose=False)
                model = program.model_proto
            elif exporter == "torchscript":
                import io
                buf = io.BytesIO()
                torch.onnx.export(net, (example,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes={INPUT_NAME: {0: batch_name}, OUTPUT_NAME: {0: batch_name}},
                                  opset_version=opset, do_constant_folding=True, dynamo=False)
                model = onnx.load_from_string(buf.getvalue())
            else:
                raise BackendError(f"unknown ONNX exporter {exporter!r} (dynamo or torchscript)")
    except BackendError:
        raise
    except Exception as e:  # the exporters raise many types
        raise BackendError(f"ONNX export of {path.name} failed ({exporter}): {str(e).splitlines()[0]}") from None

    meta = {"producer": "deeppose", "opset": str(opset), "exporter": exporter, "torch_version": torch.__version__,
            "batch_axis": batch_name, "input": INPUT_NAME, "output": OUTPUT_NAME, **(metadata or {})}
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=str(k), value=str(v))
    try:
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(tmp))
        if verify:
            with torch.no_grad():
                want = net(example).numpy()
            got = OnnxRuntimeRegressor(tmp, threads=1).regress(example.numpy())
            diff = float(np.abs(got - want).max())
            if not diff <= PARITY_TOLERANCE:
                raise BackendError(f"ONNX export of {path.name} differs from PyTorch by {diff:.2e} "
                                   f"(> {PARITY_TOLERANCE:g} normalized)")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def onnx_metadata(path: str | Path) -> dict:
    """The metadata strings of an ONNX file, plus ``opset_imported`` (the default domain's opset)."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["opset_imported"] = next((str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), "")
    return meta


def onnx_path(checkpoint: str | Path, folder: str | Path, sha: str | None = None) -> Path:
    """Cache file of one stage checkpoint in ``folder``: ``<stem>.<sha16>.onnx``."""
    checkpoint = Path(checkpoint)
    sha = sha or file_sha256(checkpoint)
    return Path(folder) / f"{checkpoint.stem}.{sha[:16]}.onnx"


def ensure_onnx(info: "ModelInfo", cache_dir: str | Path | None = None, exporter: str | None = None,
                force: bool = False, opset: int = OPSET) -> list[Path]:
    """ONNX files of every stage of ``info``, exported now where the cache lacks them.

    A stage is exported when no file keyed by its checkpoint's checksum exists (or ``force``);
    older exports of the same stage in the cache folder are deleted.

    Args:
        info: the model.
        cache_dir: where the files go (default: the model folder when writable, else
            :func:`default_cache_dir`).
        exporter: see :func:`export_stage_onnx`.
        force: export even when a cached file exists.
    Returns:
        one path per stage, stage 1 first.
    Raises:
        BackendError: export failure; ModelError: unreadable checkpoint.
    """
    from ..model import load_stage_module

    folder = Path(cache_dir) if cache_dir else (info.folder if is_writable(info.folder) else default_cache_dir(info.folder))
    paths = []
    for s, ckpt in enumerate(info.stage_files, start=1):
        sha = file_sha256(ckpt)
        path = onnx_path(ckpt, folder, sha)
        if force or not path.is_file():
            module = load_stage_module(ckpt, info.skeleton.k)
            log.info("exporting stage %d (%s) to %s", s, ckpt.name, path)
            export_stage_onnx(module, path, batch_name="persons" if s == 1 else "persons_x_k", opset=opset,
                              exporter=exporter, metadata={"stage": s, "checkpoint": ckpt.name,
                                                           "checkpoint_sha256": sha})
            stale = re.compile(re.escape(ckpt.stem) + r"\.[0-9a-f]{16}\.onnx")
            for old in folder.glob(f"{ckpt.stem}.*.onnx"):
                if old != path and stale.fullmatch(old.name):
                    old.unlink(missing_ok=True)
        paths.append(path)
    return paths


class OnnxRuntimeRegressor(Regressor):
    """:class:`engine.backends.base.Regressor` running one stage's ONNX graph with ONNX Runtime (CPU).

    One inference session, created once, with all graph optimizations (constant folding,
    batch-norm folding, conv+activation fusion), ``threads`` intra-op threads, sequential
    execution. Each call runs the whole batch in one session run (``max_batch`` None).

    Args:
        path: the stage's .onnx file.
        threads: intra-op threads (default: physical cores of this process's CPU set).
        spinning: let idle worker threads spin-wait for work. Off by default: on the 2-core
            machine of docs/SPEED.md spinning saved nothing when idle and doubled the
            cascade's latency when other work (training, the face detector, the GUI) shared
            the cores.
        reason: why this backend was chosen (see :class:`Regressor`).
    Raises:
        BackendError: onnxruntime missing or the file cannot be loaded.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False, reason: str = ""):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(f"onnxruntime is not installed: {e}") from None
        self.path = Path(path)
        self.threads = int(threads or physical_cores())
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0]}") from None
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        super().__init__(f"onnxruntime {ort.__version__} (CPU, {self.threads} threads)", None, reason)

    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(B, 3, 220, 220) float32 -> (B, 2k) float32 normalized coordinates, one session run."""
        self._check_open()
        x = np.ascontiguousarray(crops, dtype=np.float32)
        return self.session.run([self.output], {self.input: x})[0]

    def _release(self) -> None:
        self.session = None


def create_onnxruntime_regressors(info: "ModelInfo", threads: int | None = None, spinning: bool = False,
                                  cache_dir: str | Path | None = None, reason: str = "") -> list[OnnxRuntimeRegressor]:
    """One :class:`OnnxRuntimeRegressor` per stage of ``info`` (exporting to ONNX when needed)."""
    return [OnnxRuntimeRegressor(p, threads, spinning, reason) for p in ensure_onnx(info, cache_dir)]
