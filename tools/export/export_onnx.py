"""`python main.py export-onnx`: export each stage of a model folder to ONNX (build time: torch, onnx).

Each stage's :class:`engine.network.PoseRegressor` (fp32, eval mode) becomes ``stage<s>.onnx`` in
the model folder, and the manifest's stage entry names it (``"onnx": "stage<s>.onnx"``): the
runtime backends (ONNX Runtime, and TensorRT's ``build-engines``) load these prebuilt files and
never export. Graph: input ``crops`` float32 (B, 3, S, S) (S the stage's crop side), output ``coords`` float32
(B, 2k), B a dynamic axis (``persons`` at stage 1, ``persons_x_k`` at stages >= 2). The graph's
metadata records the opset, exporter, torch version and the checkpoint's SHA-256 (the runtime
refuses a file exported from another checkpoint).

Small files: every float32 initializer whose values are exactly representable in float16 (those
of a checkpoint stored in fp16 that the exporter did not fold into others) is stored as
float16 followed by a Cast to float32, which ONNX Runtime's constant folding turns back into
float32 once, when it loads the graph: bit-identical weights in about 55% of the bytes. ``--out DIR`` writes a runtime-only model folder (the
manifest and the ONNX files, no checkpoints) elsewhere.

The check runs PyTorch and ONNX Runtime on real crops of a video frame (stage 1: person boxes;
stages >= 2: joint-sized boxes) and prints the largest difference in normalized coordinates.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterator

from deeppose.engine.cli_args import WeightsError, add_weights, resolve_weights

OPSET = 18
"""ONNX opset of exported graphs (supported by ONNX Runtime >= 1.14 and TensorRT >= 8.6)."""
PARITY_TOLERANCE = 1e-4
"""Largest allowed |PyTorch - ONNX Runtime| difference, in normalized coordinates."""
FP16_SUFFIX = "__fp16"
"""Name suffix of a float16 initializer that a Cast turns back into the float32 tensor it names."""

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its sub-parser."""
    add_weights(parser)
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write a runtime-only model folder (manifest + .onnx files) here, e.g. to deploy it "
                             "(default: into the model folder itself, next to the checkpoints)")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                        help="torch.onnx exporter (default dynamo when onnxscript is installed)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help=f"ONNX opset (default {OPSET})")
    parser.add_argument("--force", action="store_true", help="export even when an up-to-date file exists")
    parser.add_argument("--no-check", action="store_true", help="skip the PyTorch-vs-ONNX Runtime check on real crops")


# --------------------------------------------------------------------------- export

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


def compact_initializers(model) -> int:
    """Store every float32 initializer that float16 represents exactly as float16 + a Cast node.

    In place. The Cast nodes are put first in the graph; ONNX Runtime constant-folds them when
    a session is created, so the weights it runs with are bit-identical to the originals.

    Args:
        model: an ``onnx.ModelProto``.
    Returns:
        the number of initializers converted.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    casts, kept, n = [], [], 0
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            a = numpy_helper.to_array(init)
            h = a.astype(np.float16)
            if a.size and np.array_equal(h.astype(np.float32), a, equal_nan=True):
                kept.append(numpy_helper.from_array(h, init.name + FP16_SUFFIX))
                casts.append(helper.make_node("Cast", [init.name + FP16_SUFFIX], [init.name], to=TensorProto.FLOAT,
                                              name=f"load_fp16_{n}"))
                n += 1
                continue
        kept.append(init)
    del g.initializer[:]
    g.initializer.extend(kept)
    for node in reversed(casts):
        g.node.insert(0, node)
    return n


def expand_initializers(model) -> int:
    """The inverse of :func:`compact_initializers`: float16 initializers that a Cast turns into
    float32 become float32 initializers again (in place; returns how many). TensorRT builds
    start from the plain float32 graph."""
    from onnx import TensorProto, numpy_helper

    g = model.graph
    by_name = {i.name: i for i in g.initializer}
    drop, n = [], 0
    for node in g.node:
        if (node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in by_name
                and node.input[0].endswith(FP16_SUFFIX)
                and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)):
            src = by_name.pop(node.input[0])
            arr = numpy_helper.to_array(src).astype("float32")
            g.initializer.remove(src)
            g.initializer.append(numpy_helper.from_array(arr, node.output[0]))
            drop.append(node)
            n += 1
    for node in drop:
        g.node.remove(node)
    return n


def export_stage_onnx(module, path: str | Path, batch_name: str = "batch", opset: int = OPSET,
                      exporter: str | None = None, metadata: dict | None = None,
                      verify: bool = True, compact: bool = True) -> dict:
    """Export one stage's network psi to ONNX with a dynamic batch axis.

    Args:
        module: a :class:`engine.network.PoseRegressor`; exported as fp32 in eval mode (a
            copy is made, ``module`` is left as it was).
        path: the .onnx file to write (written to a temporary name, then renamed).
        batch_name: name of the dynamic batch axis ("persons" or "persons_x_k").
        opset: ONNX opset version.
        exporter: "dynamo" or "torchscript" (default: :func:`default_exporter`). Both fold
            the batch norms into the convolutions, whose weights then no longer fit float16
            exactly and stay float32 (about an eighth of the compact preset's weights).
        metadata: extra string key/values stored in the graph's metadata.
        verify: run the file with ONNX Runtime on a batch of 3 and compare with PyTorch.
        compact: store fp16-exact initializers as fp16 (:func:`compact_initializers`).
    Returns:
        the metadata written (opset, exporter, torch version, batch axis, ...).
    Raises:
        BackendError: the export failed, or its output differs from PyTorch by more than
            :data:`PARITY_TOLERANCE`.
        OSError: the file cannot be written (a read-only or full folder); nothing is left
            behind then.
    """
    import numpy as np
    import onnx
    import torch

    from deeppose.engine.backends.base import BackendError
    from deeppose.engine.backends.common import INPUT_NAME, OUTPUT_NAME
    from deeppose.engine.backends.onnxruntime_backend import OnnxRuntimeRegressor
    from deeppose.engine.outputs import replaced_atomically

    path = Path(path)
    exporter = exporter or default_exporter()
    net = copy.deepcopy(module).float().eval().cpu()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(3, 3, net.config()["input_size"], net.config()["input_size"], generator=gen)
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

    fp16 = compact_initializers(model) if compact else 0
    meta = {"producer": "deeppose", "opset": str(opset), "exporter": exporter, "torch_version": torch.__version__,
            "batch_axis": batch_name, "input": INPUT_NAME, "output": OUTPUT_NAME, "fp16_initializers": fp16,
            **(metadata or {})}
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=str(k), value=str(v))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own beside the file, removed on any failure (a read-only folder:
    # the OSError of creating it, nothing else).
    with replaced_atomically(path, suffix=".onnx") as tmp:
        onnx.save_model(model, str(tmp))
        if verify:
            with torch.no_grad():
                want = net(example).numpy()
            with OnnxRuntimeRegressor(tmp, threads=1) as reg:
                got = reg.regress(example.numpy())
            diff = float(np.abs(got - want).max())
            if not diff <= PARITY_TOLERANCE:
                raise BackendError(f"ONNX export of {path.name} differs from PyTorch by {diff:.2e} "
                                   f"(> {PARITY_TOLERANCE:g} normalized)")
    return meta


def onnx_metadata(path: str | Path) -> dict:
    """The metadata strings of an ONNX file, plus ``opset_imported`` (the default domain's opset)."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["opset_imported"] = next((str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), "")
    return meta


def onnx_file_name(stage: int) -> str:
    """File name of stage ``stage``'s graph in a model folder: ``stage<s>.onnx``."""
    return f"stage{stage}.onnx"


def export_model(folder: str | Path, out: str | Path | None = None, exporter: str | None = None,
                 force: bool = False, opset: int = OPSET, verify: bool = True) -> list[Path]:
    """Export every stage of a model folder to ONNX and name the files in its manifest.

    A stage is skipped when its file exists and was exported from the same checkpoint (SHA-256
    in the file's metadata), unless ``force``.

    Args:
        folder: the model folder (manifest.json + stage checkpoints).
        out: folder to write the ONNX files and a manifest naming them (default ``folder``);
            another folder becomes a runtime-only model folder (no checkpoints).
        exporter: see :func:`export_stage_onnx`.
        force: export even up-to-date stages.
        opset: ONNX opset.
        verify: compare each file with PyTorch on random inputs (:data:`PARITY_TOLERANCE`).
    Returns:
        one path per stage, stage 1 first.
    Raises:
        ModelError: unreadable manifest or checkpoint; BackendError: export failure;
        OSError: a file cannot be written into ``out``.
    """
    from deeppose.engine.backends.common import file_sha256
    from deeppose.engine.model import load_stage_module, read_manifest, write_manifest

    info = read_manifest(folder)
    out = Path(out) if out is not None else info.folder
    manifest = info.manifest
    paths = []
    for s, ckpt in enumerate(info.stage_files, start=1):
        sha = file_sha256(ckpt)
        path = out / onnx_file_name(s)
        if force or not path.is_file() or onnx_metadata(path).get("checkpoint_sha256") != sha:
            log.info("exporting stage %d (%s) to %s", s, ckpt.name, path)
            export_stage_onnx(load_stage_module(ckpt, info.skeleton.k), path,
                              batch_name="persons" if s == 1 else "persons_x_k", opset=opset, exporter=exporter,
                              metadata={"stage": s, "checkpoint": ckpt.name, "checkpoint_sha256": sha}, verify=verify)
        manifest.stages[s - 1].onnx = path.name
        paths.append(path)
    write_manifest(out, manifest)
    return paths


# --------------------------------------------------------------------------- the command

def real_crops(info, count: int = 11, stage: int = 1, seed: int = 0):
    """(count, 3, S, S) float32 network inputs cropped from a real video frame (or, without the
    shared data, a FLIC image); None when neither is readable.

    Stage 1 crops person-sized boxes (b0), stages >= 2 joint-box-sized boxes (Eq. 7 sizes,
    sigma * a torso diameter of about a fifth of the frame height).
    """
    import numpy as np

    from deeppose.engine.geometry import crop_boxes, to_network_input
    from deeppose.tools.data.datasets import read_frames, walking_video

    frames = read_frames(walking_video(), 1, start=60)
    if frames:
        image = frames[0]
    else:
        import cv2
        flic = walking_video().parents[1] / "flic" / "images"
        files = sorted(flic.glob("*.jpg"))[:1] if flic.is_dir() else []
        image = cv2.imread(str(files[0])) if files else None
        if image is None:
            return None
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    side = (0.6 if stage == 1 else 0.2 * info.sigma) * h
    boxes = np.column_stack([rng.uniform(0.3 * w, 0.7 * w, count), rng.uniform(0.3 * h, 0.7 * h, count),
                             side * rng.uniform(0.8, 1.2, count), side * rng.uniform(0.8, 1.2, count)])
    norm = info.normalization
    return to_network_input(crop_boxes(image, boxes, info.stage_input_sizes[stage - 1]), mean=norm.mean, std=norm.std,
                            channel_order=norm.channel_order)


def parity(module, onnx_path, crops) -> float:
    """Largest |PyTorch - ONNX Runtime| output difference on ``crops``, normalized coordinates."""
    import numpy as np
    import torch

    from deeppose.engine.backends.onnxruntime_backend import OnnxRuntimeRegressor
    with torch.no_grad():
        want = module.float().eval()(torch.from_numpy(crops)).numpy()
    with OnnxRuntimeRegressor(onnx_path, threads=1) as reg:
        got = reg.regress(crops)
    return float(np.abs(got - want).max())


def run(args) -> int:
    """Export (or find up to date) the ONNX files of every stage and print them; 1 on failure."""
    import onnxruntime

    from deeppose.engine.model import ModelError, load_stage_module, read_manifest

    try:
        args.weights = resolve_weights(args.weights, args.model)
        info = read_manifest(args.weights)
        paths = export_model(args.weights, args.out, args.exporter, args.force, args.opset or OPSET)
    except (ModelError, WeightsError) as e:  # BackendError included
        print(f"export-onnx: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # a read-only or full model folder: one line naming it
        folder = Path(e.filename).parent if e.filename else Path(args.out or args.weights)
        print(f"export-onnx: cannot write the ONNX files into {folder}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"model {args.weights}: {len(paths)} stage(s); check backend: onnxruntime {onnxruntime.__version__} (CPU)")
    failed = False
    for s, (ckpt, path) in enumerate(zip(info.stage_files, paths), start=1):
        meta = onnx_metadata(path)
        line = (f"stage {s}: {path} ({path.stat().st_size / 1e6:.1f} MB, opset {meta.get('opset_imported')}, "
                f"{meta.get('exporter', '?')} exporter, {meta.get('fp16_initializers', '0')} fp16 initializers, "
                f"batch axis '{meta.get('batch_axis', '?')}')")
        if not args.no_check:
            crops = real_crops(info, 1 if s == 1 else info.skeleton.k, stage=s)
            if crops is None:
                line += "; parity not checked (no shared data found)"
            else:
                diff = parity(load_stage_module(ckpt, info.skeleton.k), path, crops)
                ok = diff <= PARITY_TOLERANCE
                failed |= not ok
                line += f"; max |torch - onnx| on {len(crops)} real crops {diff:.1e} {'ok' if ok else 'FAILED'}"
        print(line)
    return 1 if failed else 0
