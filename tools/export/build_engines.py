"""`python main.py build-engines`: build one TensorRT engine per stage of a model folder (build time).

The engines are written next to the weights (``stage<s>.<precision>.sm<cc>-<gpu>.trt<ver>.engine``
plus a ``.json`` metadata file: TensorRT version, GPU name and compute capability, precision,
batch profile, ONNX and checkpoint checksums); :mod:`engine.backends.tensorrt_backend` loads
them at run time. Engines are built from the ONNX files the model folder names (see
:mod:`tools.export.export_onnx`). The optimization profile covers the batch sizes the cascade uses:
1..N persons at stage 1, 1..N*k joint crops at stages >= 2 (N = ``--max-batch``; any B >= 1
runs, larger batches in chunks), tuned for one person.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover (module level stays light: `main.py --help` imports every command)
    from deeppose.engine.backends.tensorrt_backend import TrtEnvironment
    from deeppose.engine.model import ModelInfo

from deeppose.engine.cli_args import WeightsError, add_precision, add_weights, positive_int, resolve_weights

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its sub-parser."""
    add_weights(parser)
    add_precision(parser)
    parser.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="most persons per frame the engines accept (default 8; stages >= 2 take N*k crops)")
    parser.add_argument("--workspace-mb", type=positive_int, default=1024, metavar="MIB",
                        help="TensorRT builder workspace in MiB (default: 1024)")
    parser.add_argument("--device", default=None, metavar="DEVICE", help="CUDA device (default: cuda:0)")


def run(args) -> int:
    """Build the engines and print where they went; 1 with a one-line reason on failure."""
    import time

    from deeppose.engine.backends import backend_status
    from deeppose.engine.backends.tensorrt_backend import DEFAULT_MAX_PERSONS, current_environment
    from deeppose.engine.model import ModelError, read_manifest

    try:
        args.weights = resolve_weights(args.weights, args.model)
    except WeightsError as e:
        print(f"build-engines: {e}", file=sys.stderr)
        return 2
    max_persons = DEFAULT_MAX_PERSONS if args.max_batch is None else args.max_batch
    if max_persons < 1:
        print(f"build-engines: --max-batch must be at least 1, got {max_persons}", file=sys.stderr)
        return 2
    ok, why = backend_status()["tensorrt"]
    if not ok:   # the GPU first: without one, nothing else matters
        print(f"build-engines: {why}", file=sys.stderr)
        return 2
    try:
        info = read_manifest(args.weights)
        env = current_environment(args.device)
        print(f"building {args.precision} engines for {env.describe()}, up to {max_persons} persons per frame")
        t = time.perf_counter()
        paths = build_engines(info, args.precision, max_persons, args.device, args.workspace_mb)
    except ModelError as e:  # BackendError included
        print(f"build-engines: {e}", file=sys.stderr)
        return 2
    for s, p in enumerate(paths, start=1):
        print(f"stage {s}: {p} ({p.stat().st_size / 1e6:.1f} MB)")
    print(f"built {len(paths)} engine(s) in {time.perf_counter() - t:.0f} s; run with --backend tensorrt")
    return 0


# --------------------------------------------------------------------------- building

def to_fp16_onnx(model):
    """An fp16 copy of an fp32 ONNX graph (or of one written by ``export-onnx``) whose input
    and output stay float32.

    Every float32 initializer (and Constant) becomes float16; a Cast to float16 follows the
    input and a Cast to float32 precedes the output. Built for TensorRT's strongly typed
    networks, where the graph's types fix each layer's precision.

    Args:
        model: an ``onnx.ModelProto`` with one input and one output (left unchanged).
    Returns:
        the converted ``onnx.ModelProto``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from deeppose.tools.export.export_onnx import expand_initializers

    m = onnx.ModelProto()
    m.CopyFrom(model)
    expand_initializers(m)   # weights stored as fp16 + Cast (export-onnx) become plain fp32 first
    g = m.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
    inp, out = g.input[0].name, g.output[0].name
    for node in g.node:
        node.input[:] = [inp + "_fp16" if x == inp else x for x in node.input]
        node.output[:] = [out + "_fp16" if x == out else x for x in node.output]
    g.node.insert(0, helper.make_node("Cast", [inp], [inp + "_fp16"], to=TensorProto.FLOAT16, name="input_to_fp16"))
    g.node.append(helper.make_node("Cast", [out + "_fp16"], [out], to=TensorProto.FLOAT, name="output_to_fp32"))
    del g.value_info[:]
    onnx.checker.check_model(m)
    return m


def profile_batches(stage: int, k: int, max_persons: int) -> tuple[int, int, int]:
    """(min, opt, max) batch of a stage's optimization profile: stage 1 regresses one crop per
    person (1, 1, P); stages >= 2 the k joint crops of every person (1, k, P*k), k being the
    number of joints the stage refines (``ModelInfo.stage_joints``). Every profile starts at 1
    so that the engine takes any batch B >= 1 (larger than max: run in chunks); opt is one
    person."""
    if stage == 1:
        return 1, 1, max_persons
    return 1, k, max_persons * k


def build_engine(onnx_file: str | Path, out: str | Path, precision: str, batches: tuple[int, int, int],
                 env: TrtEnvironment, metadata: dict, workspace_mb: int = 1024) -> dict:
    """Build and serialize one TensorRT engine from an ONNX file; writes ``out`` and its metadata.

    Args:
        onnx_file: the stage's ONNX file (as written by ``export-onnx``; converted to fp16 here
            for ``precision="fp16"``).
        out: the .engine file to write.
        precision: "fp16" or "fp32".
        batches: (min, opt, max) batch sizes of the optimization profile.
        env: the machine the engine is built for (:func:`current_environment`).
        metadata: extra metadata (stage, checkpoint, checksums).
    Returns:
        the metadata written next to the engine.
    Raises:
        BackendError: TensorRT missing or too old, ONNX parse errors, build failure.
    """
    import onnx
    import tensorrt as trt

    from deeppose.engine.backends.base import BackendError
    from deeppose.engine.backends.common import INPUT_NAME, file_sha256
    from deeppose.engine.backends.tensorrt_backend import metadata_path
    from deeppose.tools.export.export_onnx import expand_initializers

    onnx_file, out = Path(onnx_file), Path(out)
    model = onnx.load(str(onnx_file))
    expand_initializers(model)   # the plain float32 graph (shipped files store weights as fp16 + Cast)
    if precision == "fp16":
        model = to_fp16_onnx(model)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendError(f"TensorRT {trt.__version__} is too old: deeppose needs TensorRT 10 or newer")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_file.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    shape = tuple(model.graph.input[0].type.tensor_type.shape.dim[i].dim_value for i in (1, 2, 3))
    profile = builder.create_optimization_profile()
    lo, opt, hi = batches
    profile.set_shape(INPUT_NAME, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_file.name} (see its log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    from deeppose.engine.outputs import replaced_atomically

    with replaced_atomically(out) as tmp:
        tmp.write_bytes(bytes(blob))
    meta = {**asdict(env), "precision": precision, "min_batch": lo, "opt_batch": opt, "max_batch": hi,
            "onnx": onnx_file.name, "onnx_sha256": file_sha256(onnx_file), **metadata}
    metadata_path(out).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def build_engines(info: "ModelInfo", precision: str = "fp16", max_persons: int | None = None,
                  device: str | None = None, workspace_mb: int = 1024) -> list[Path]:
    """Build one engine per stage of ``info`` for this machine from the ONNX files its manifest
    names (exporting them first with :func:`tools.export.export_onnx.export_model` when missing).

    Engines go next to the weights, or to the per-user cache when the folder is read-only.
    ``max_persons``: most persons per frame (default ``DEFAULT_MAX_PERSONS``, 8).
    Returns the engine paths, stage 1 first. Raises :class:`BackendError` (see :func:`build_engine`).
    """
    from deeppose.engine.backends import tensorrt_backend as trtb
    from deeppose.engine.backends.common import default_cache_dir, file_sha256, is_writable

    max_persons = trtb.DEFAULT_MAX_PERSONS if max_persons is None else int(max_persons)
    from deeppose.engine.model import read_manifest
    from deeppose.tools.export.export_onnx import export_model

    env = trtb.current_environment(device)
    if any(p is None or not p.is_file() for p in info.onnx_files):
        export_model(info.folder)
        info = read_manifest(info.folder)
    folder = info.folder if is_writable(info.folder) else default_cache_dir(info.folder, "engines")
    paths = []
    for s, (ckpt, onnx_file) in enumerate(zip(info.stage_files, info.onnx_files), start=1):
        out = trtb.engine_path(ckpt, folder, env, precision)
        log.info("building the TensorRT engine of stage %d (%s) -> %s", s, precision, out)
        crops = len(joints) if (joints := info.stage_joints[s - 1]) is not None else info.skeleton.k
        build_engine(onnx_file, out, precision, profile_batches(s, crops, max_persons), env,
                     {"stage": s, "checkpoint": ckpt.name,
                      "checkpoint_sha256": file_sha256(ckpt) if ckpt.is_file() else None,
                      "max_persons": max_persons}, workspace_mb)
        paths.append(out)
    return paths
