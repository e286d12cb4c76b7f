"""ONNX Runtime backend (CPU): one inference session per stage, from the ONNX files a model
folder names (run time: needs onnxruntime and numpy only, neither torch nor onnx).

The files are written at build time by ``python main.py export-onnx`` (:mod:`tools.export.export_onnx`):
input ``crops`` float32 (B, 3, S, S) (S the stage's crop side), output ``coords`` float32 (B, 2k), B dynamic. Their
weights may be stored as float16 followed by Casts to float32, which ONNX Runtime's constant
folding resolves once when the session is created; its graph optimizations also fold the
batch norms into the convolutions. A file exported from another checkpoint than the one in
the folder (its metadata records the checkpoint's SHA-256) is refused with the command that
exports it again.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..interrupts import caused_by_ctrl_c, ctrl_c_held
from .base import BackendError, Regressor
from .common import file_sha256, physical_cores

if TYPE_CHECKING:  # pragma: no cover
    from ..model import ModelInfo


INT8_SUFFIX = ".int8.onnx"


def int8_path(onnx_path: Path) -> Path:
    """A stage's int8 graph, written by ``quantize-int8`` beside it: ``stageN.onnx`` ->
    ``stageN.int8.onnx``."""
    return onnx_path.with_name(onnx_path.name[: -len(".onnx")] + INT8_SUFFIX)


def export_command(folder: str | Path) -> str:
    """The command that (re-)exports a model folder's ONNX files."""
    return f"python main.py export-onnx --weights {folder}"


_SHARED_ARENA: bool | None = None   # None: not tried yet


def shared_cpu_arena(ort) -> bool:
    """Register one CPU memory arena for every session of this process (once); True if it is.

    Each session otherwise grows its own arena to its largest batch (stage >= 2 runs k crops
    per person), so the three stages held three arenas; the stages run one after another,
    so one shared arena serves them all. On the 2-core VM this cut the video command's
    resident memory by about 50 MiB at the same speed. False when this ONNX Runtime cannot
    register one (each session then keeps its own).
    """
    global _SHARED_ARENA
    if _SHARED_ARENA is None:
        try:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
            _SHARED_ARENA = True
        except Exception:  # an ONNX Runtime build without the API: per-session arenas
            _SHARED_ARENA = False
    return _SHARED_ARENA


class OnnxRuntimeRegressor(Regressor):
    """:class:`engine.backends.base.Regressor` running one stage's ONNX graph with ONNX Runtime (CPU).

    One inference session, created once, with all graph optimizations (constant folding,
    batch-norm folding, conv+activation fusion), ``threads`` intra-op threads, sequential
    execution, and the process's shared CPU arena (:func:`shared_cpu_arena`). Each call runs the whole batch in one session run (``max_batch`` None).

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
            with ctrl_c_held():   # a Ctrl-C inside its native initialization is no "not installed" (engine.interrupts)
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
        if shared_cpu_arena(ort):
            so.add_session_config_entry("session.use_env_allocators", "1")
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            if caused_by_ctrl_c(e):   # a Ctrl-C that Python or a native call wrapped (engine.interrupts)
                raise
            raise BackendError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0]}") from None
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        shape = self.session.get_inputs()[0].shape    # [batch, 3, S, S]; S an int unless exported dynamic
        self.input_side = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else None
        self.int8 = self.path.name.endswith(INT8_SUFFIX)
        super().__init__(f"onnxruntime {ort.__version__} (CPU, {self.threads} threads)", None, reason)

    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, 2k) float32 normalized coordinates, one session run (S:
        the stage's crop side, ``input_side``)."""
        self._check_open()
        x = np.ascontiguousarray(crops, dtype=np.float32)
        return self.session.run([self.output], {self.input: x})[0]

    def _release(self) -> None:
        self.session = None


    @property
    def metadata(self) -> dict[str, str]:
        """The graph's metadata strings (opset, exporter, stage, checkpoint_sha256, ...)."""
        self._check_open()
        return dict(self.session.get_modelmeta().custom_metadata_map)


INT8_MAX_DROP = 0.01
"""Issue 10's rule for int8: val mean PDJ@0.2 of the last stage may drop by at most this much."""


def int8_record(manifest) -> tuple[tuple[int, ...], str]:
    """The stages a model runs in int8 by default, and a short account of why.

    The record is the manifest's "int8" entry (``evaluate --int8 --int8-stages S
    --write-manifest``): the stages measured in int8 (``stages``), val metrics per stage, and
    in ``val_protocol`` how they were measured and from which checkpoints and calibration
    caches. It passes when it was measured as the float ``val_metrics`` were (split, examples,
    flip, face detector threshold and runtime) and the last stage's mean PDJ@0.2 is at most
    :data:`INT8_MAX_DROP` below the float one; then its stages run in int8. (Measured on a CPU
    without VNNI, whose uint8 x int8 kernels may saturate; VNNI kernels do not.)

    Args:
        manifest: an :class:`engine.model.Manifest`.
    Returns:
        (stages, 1-based; empty when the record is missing or fails, account), e.g.
        ((3,), "stage 3 int8: val PDJ@0.2 0.861, float 0.862").
    """
    rec = manifest.extra.get("int8") if isinstance(manifest.extra, dict) else None
    last = f"stage{len(manifest.stages)}"
    try:
        named = list(rec["stages"])
        i8 = float(rec["val_metrics"][last]["pdj@0.2"]["mean"])
        fl = float(manifest.val_metrics[last]["pdj@0.2"]["mean"])
        protocol, float_protocol = dict(rec["val_protocol"]), dict(manifest.val_protocol or {})
        stages = int8_stages(named, len(manifest.stages))
    except (KeyError, TypeError, ValueError):
        return (), "no int8 validation in the manifest"
    except BackendError:   # a stage outside 1..S
        stages = ()
    if not stages:
        return (), f"the int8 record names stages {named}"
    other = [k for k in ("split", "examples", "flip", "face_confidence", "face_runtime")
             if protocol.get(k) != float_protocol.get(k)]
    if other:
        return (), f"the int8 record was measured with another {', '.join(other)} than the float metrics"
    account = f"stage{'s' if len(stages) > 1 else ''} {', '.join(map(str, stages))} int8: val PDJ@0.2 {i8:.3f}, float {fl:.3f}"
    if i8 < fl - INT8_MAX_DROP:
        return (), f"{account}: more than {INT8_MAX_DROP} lower"
    return stages, account


def int8_stages(int8, num_stages: int) -> tuple[int, ...]:
    """The 1-based stages that ``int8`` asks for: True all, False or None none, or the
    stage numbers given (an iterable).

    Raises:
        BackendError: a stage number outside 1..num_stages.
    """
    if int8 is True:
        return tuple(range(1, num_stages + 1))
    if not int8:
        return ()
    stages = tuple(sorted({int(s) for s in int8}))
    if not all(1 <= s <= num_stages for s in stages):
        raise BackendError(f"int8 stages must be in 1..{num_stages}, got {list(stages)}")
    return stages


def create_onnxruntime_regressors(info: "ModelInfo", threads: int | None = None, spinning: bool = False,
                                  reason: str = "", int8=None) -> list[OnnxRuntimeRegressor]:
    """One :class:`OnnxRuntimeRegressor` per stage of ``info``, from the ONNX files its manifest names.

    ``int8``: True runs every stage's int8 copy (``quantize-int8``, :func:`int8_path`), False
    the float graphs, a list of stage numbers the int8 copies of those; None (default) the
    stages of the model's int8 record where it passes (:func:`int8_record`), their copies are
    built and come from the checkpoints and calibration caches the record was measured with;
    else the float graphs (the regressors' ``reason`` says why).

    Raises:
        BackendError: (one line, with the command that fixes it) a stage has no ONNX file, the
            file is missing, unloadable, or was exported from another checkpoint than the
            folder's; an int8 copy asked for explicitly is missing.
    """
    if int8 is not None:
        return _stage_regressors(info, threads, spinning, reason, int8_stages(int8, len(info.stage_files)))
    stages, why = int8_record(info.manifest)
    if not stages:
        why = f"float ({why})"
    else:
        try:
            regs = _stage_regressors(info, threads, spinning, "; ".join(filter(None, (reason, why))), stages)
        except BackendError as e:
            if caused_by_ctrl_c(e):   # no reason to run the float graphs (engine.interrupts)
                raise
            why = f"float: the int8 copies cannot be used ({e})"
        else:
            measured = info.manifest.extra["int8"]["val_protocol"]   # int8_record read it: there
            if all(measured.get(k) == [r.metadata.get(k) for r in regs] for k in ("checkpoint_sha256", "calibration_sha256")):
                return regs
            for r in regs:
                r.close()
            why = ("float: the int8 validation was measured with other checkpoints or calibration (check them "
                   f"with python main.py evaluate --int8 --int8-stages {','.join(map(str, stages))} "
                   f"--write-manifest --weights {info.folder})")
    return _stage_regressors(info, threads, spinning, "; ".join(filter(None, (reason, why))), ())


def _stage_regressors(info: "ModelInfo", threads: int | None, spinning: bool, reason: str,
                      int8: tuple[int, ...]) -> list[OnnxRuntimeRegressor]:
    """The regressors of :func:`create_onnxruntime_regressors`, stages ``int8`` (1-based) in int8."""
    regs: list[OnnxRuntimeRegressor] = []
    try:
        for s, (path, ckpt) in enumerate(zip(info.onnx_files, info.stage_files), start=1):
            if path is None or not path.is_file():
                what = "names no ONNX file" if path is None else f"names {path.name}, which is missing"
                raise BackendError(f"stage {s} of {info.folder} {what}; export it with: {export_command(info.folder)}")
            if s in int8:
                path = int8_path(path)
                if not path.is_file():
                    raise BackendError(f"{path.name} is missing in {info.folder}; build the int8 stages with: "
                                       f"python main.py quantize-int8 --weights {info.folder} (or make onnx)")
            reg = OnnxRuntimeRegressor(path, threads, spinning, reason)
            regs.append(reg)
            exported_from = reg.metadata.get("checkpoint_sha256")
            if exported_from and ckpt.is_file() and file_sha256(ckpt) != exported_from:
                raise BackendError(f"{path.name} in {info.folder} was exported from an older {ckpt.name}; "
                                   f"export it again with: {export_command(info.folder)}")
    except BackendError:
        for r in regs:
            r.close()
        raise
    return regs
