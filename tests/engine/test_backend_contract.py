"""One conformance test for every runtime backend available here: the same real crops (a FLIC
val image, stage 1 on the person box, stage 2 on the joint boxes of stage 1's estimate) through
the shipped model on each backend, against the PyTorch fp32 reference, at batch sizes 1 and up.

Backends: torch, onnxruntime, tensorrt (real, when installed with a GPU; skipped otherwise) and
tensorrt-standin (the TensorRT backend's build/load/run code over tests/support/trt_standin.py, whose
engines execute with ONNX Runtime)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from deeppose.engine.backends import BackendError, create_regressors
from deeppose.engine.backends.base import Regressor
from deeppose.engine.geometry import boxes_from_pose, crop_boxes, joint_boxes, to_network_input
from deeppose.engine.model import read_manifest
from support import require_data

BACKENDS = ["torch", "onnxruntime", "onnxruntime-threads", "onnxruntime-int8", "tensorrt", "tensorrt-standin"]
TOLERANCE = {"torch": 1e-5, "onnxruntime": 1e-5, "onnxruntime-threads": 1e-5, "onnxruntime-int8": 2e-2,
             "tensorrt": 2e-2, "tensorrt-standin": 1e-5}
"""Largest |backend - PyTorch fp32| output allowed, normalized coordinates (outputs span about 0.4).
ONNX Runtime fp32 (one thread, and its default, one per physical core): at most 5e-7 seen here,
the same with 1, 2, 4 and 8 threads and at every batch size; 1e-5 leaves room for other CPUs'
kernels and still catches weights rounded to fp16 (4e-5 to 1.2e-4). TensorRT: fp16. ONNX Runtime
int8: the int8 copies of stages 1 and 2, as --int8 runs them, up to 0.013 seen here; the accuracy
of the default, stage 3 in int8, is the manifest's val record, tests/tools/test_quantize_int8.py."""


def _have_tensorrt() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt package is not installed (not installable on these machines)"
    import torch
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible"
    return True, ""


@pytest.fixture(scope="module")
def model(flic_weights, tmp_path_factory):
    """A copy of the shipped model folder (engines built by the tests go there, not into the repo)."""
    folder = tmp_path_factory.mktemp("contract") / "flic"
    shutil.copytree(flic_weights, folder, ignore=shutil.ignore_patterns("*.engine", "*.engine.json"))
    return read_manifest(folder)


@pytest.fixture(scope="module")
def crops(model):
    """{1: (1, 3, 220, 220) stage-1 crop of a FLIC person, 2: (k, 3, S, S) joint crops at stage 2's
    input side S}, real."""
    require_data("flic", "examples.mat")
    from deeppose.tools.data.datasets import load_dataset, load_image
    ds = load_dataset("flic", None, "val")
    image = load_image(ds.examples[0].image_path)
    b0 = boxes_from_pose(ds.poses()[0][None], margin=0.25)
    b0[:, 2:] = b0[:, 2:].max()                      # a square person box around the labelled joints
    stage1 = to_network_input(crop_boxes(image, b0, model.input_size))
    ref = create_regressors(model, "torch", device="cpu")
    u = ref[0].regress(stage1).reshape(1, model.skeleton.k, 2)
    pose = u * b0[:, None, 2:] + b0[:, None, :2]     # N^-1 (Eq. 1)
    boxes = joint_boxes(pose, model.sigma, model.skeleton, 0.05 * b0[0, 2])[0]
    stage2 = to_network_input(crop_boxes(image, boxes, model.stage_input_sizes[1]))
    return {1: stage1, 2: stage2}


@pytest.fixture(scope="module")
def reference(model, crops):
    """PyTorch fp32 outputs on the crops, per stage."""
    ref = create_regressors(model, "torch", device="cpu")
    return {s: ref[s - 1].regress(crops[s]) for s in (1, 2)}


@pytest.fixture(params=BACKENDS)
def regressors(request, model, monkeypatch):
    name = request.param
    if name == "torch":
        regs = create_regressors(model, "torch", device="cpu")
    elif name == "onnxruntime":
        regs = create_regressors(model, "onnxruntime", threads=1, int8=False)
    elif name == "onnxruntime-threads":   # the default thread count: results may differ in the last bits
        regs = create_regressors(model, "onnxruntime", int8=False)
    elif name == "onnxruntime-int8":
        regs = create_regressors(model, "onnxruntime", threads=1, int8=True)
    elif name == "tensorrt":
        ok, why = _have_tensorrt()
        if not ok:
            pytest.skip(f"TensorRT: {why}")
        from deeppose.tools.export.build_engines import build_engines
        build_engines(model, "fp16", max_persons=1)
        regs = create_regressors(model, "tensorrt", precision="fp16")
    else:
        from deeppose.engine.backends import tensorrt_backend as trtb
        from deeppose.tools.export.build_engines import build_engines
        from support.trt_standin import install_standin
        install_standin(monkeypatch)
        build_engines(model, "fp32", max_persons=1)   # stage 2 takes at most k crops per run
        regs = trtb.create_tensorrt_regressors(model, "fp32", device="cpu")
    yield name, regs
    for r in regs:
        r.close()
    for p in model.folder.glob("*.engine*"):
        p.unlink()


def test_backend_conforms(regressors, model, crops, reference):
    name, regs = regressors
    k = model.skeleton.k
    assert len(regs) == len(model.stage_files)
    for stage in (1, 2):
        r = regs[stage - 1]
        assert isinstance(r, Regressor)
        assert r.name == name.removesuffix("-standin").removesuffix("-int8").removesuffix("-threads")
        assert r.description.startswith(r.name) and "\n" not in r.description
        assert r.max_batch is None or r.max_batch >= 1
        assert isinstance(r.reason, str)
        x, want = crops[stage], reference[stage]
        assert np.ptp(want) > 0.05, "reference outputs too flat for the comparison to mean anything"
        sizes = (1, len(x)) if stage == 1 else (1, 2, len(x) - 1, len(x))
        for b in sizes:
            got = r.regress(x[:b])
            assert got.shape == (b, 2 * k) and got.dtype == np.float32
            assert np.abs(got - want[:b]).max() < TOLERANCE[name], (stage, b)
        if stage == 2:   # a batch larger than one execution takes (k + 3 > max_batch of the standin)
            big = np.concatenate([x, x[:3]])
            got = r.regress(big)
            assert got.shape == (k + 3, 2 * k)
            assert np.abs(got[k:] - want[:3]).max() < TOLERANCE[name]
    for r in regs:
        r.close()
        r.close()   # idempotent
        with pytest.raises(BackendError, match="closed"):
            r.regress(crops[1])


def test_a_regressor_must_implement_the_contract():
    class Incomplete(Regressor):
        name = "incomplete"

        def regress(self, crops):
            return np.zeros((len(crops), 22), np.float32)

    with pytest.raises(TypeError):
        Incomplete("x")   # no _release: close() could not free anything
    with pytest.raises(BackendError, match="max_batch"):
        type("Bad", (Incomplete,), {"_release": lambda self: None})("x", max_batch=0)
