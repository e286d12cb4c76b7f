"""TensorRT backend. TensorRT cannot be installed on the project's machines, so the tests that
need it skip with that reason; everything around it is tested without it: engine cache keys,
metadata checks and the rebuild message, the fp16 graph, the optimization profile, the
build-engines command, and the build/load/run glue code against a stand-in ``tensorrt``
module that executes the graphs with ONNX Runtime on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deeppose.engine.backends import BackendError, create_regressors
from deeppose.engine.backends import onnxruntime_backend as ortb
from deeppose.engine.backends import tensorrt_backend as trtb
from deeppose.engine.backends.common import file_sha256
from deeppose.engine.backends.tensorrt_backend import TrtEnvironment
from deeppose.engine.cascade import Cascade
from deeppose.engine.model import read_manifest
from deeppose.tools.export.build_engines import build_engines, profile_batches, to_fp16_onnx
from deeppose.tools.export.export_onnx import real_crops
from deeppose.tools.export.random_model import make_random_model
from support import REPO
from support.trt_standin import ENV, _Flag, install_standin

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = torch.cuda.is_available()
except ImportError:
    HAVE_TRT = False
NEEDS_TRT = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installable here (its PyPI packages only redirect "
                                                    "to NVIDIA's index) or no CUDA GPU")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = make_random_model(tmp_path_factory.mktemp("trt") / "model", stages=2, seed=2)
    return folder


# --------------------------------------------------------------------------- keys and metadata

def test_engine_key_names_everything_an_engine_depends_on(tmp_path):
    key = trtb.engine_key(ENV, "fp16")
    assert key == "fp16.sm89-nvidia-geforce-rtx-4090.trt10.8.0.43"
    others = {trtb.engine_key(ENV, "fp32"),
              trtb.engine_key(TrtEnvironment("10.9.0", ENV.gpu_name, ENV.compute_capability), "fp16"),
              trtb.engine_key(TrtEnvironment(ENV.tensorrt_version, "NVIDIA A100-SXM4-80GB", "8.0"), "fp16"),
              trtb.engine_key(TrtEnvironment(ENV.tensorrt_version, "NVIDIA L4", "8.9"), "fp16")}
    assert key not in others and len(others) == 4
    p = trtb.engine_path(tmp_path / "stage2.pt", tmp_path, ENV, "fp16")
    assert p.name == f"stage2.{key}.engine" and trtb.metadata_path(p).name == p.name + ".json"
    with pytest.raises(BackendError):
        trtb.engine_key(ENV, "int8")


def _meta(**kw):
    return {"tensorrt_version": ENV.tensorrt_version, "gpu_name": ENV.gpu_name,
            "compute_capability": ENV.compute_capability, "precision": "fp16", "checkpoint": "stage1.pt",
            "checkpoint_sha256": "abc", "max_persons": 8, **kw}


def test_check_metadata_messages():
    folder = "weights/flic"
    assert trtb.check_metadata(_meta(), ENV, "fp16", "abc", folder) is None
    cases = {
        "tensorrt_version": ("10.3.0", ["TensorRT 10.3.0", "TensorRT 10.8.0.43"]),
        "gpu_name": ("NVIDIA A100-SXM4-80GB", ["NVIDIA A100-SXM4-80GB", "RTX 4090", "sm_89"]),
        "precision": ("fp32", ["fp32", "not fp16"]),
        "checkpoint_sha256": ("old", ["older checkpoint", "stage1.pt"]),
    }
    for field, (value, needles) in cases.items():
        msg = trtb.check_metadata(_meta(**{field: value}), ENV, "fp16", "abc", folder)
        assert msg is not None and "\n" not in msg, field
        for n in needles:
            assert n in msg, (field, n)
        assert msg.endswith("python main.py build-engines --weights weights/flic --precision fp16 --max-batch 8"), msg
    assert "incomplete" in trtb.check_metadata({"precision": "fp16"}, ENV, "fp16", None, folder)


def test_find_engines_reports_engines_built_elsewhere(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    info = read_manifest(model_dir)
    with pytest.raises(BackendError) as e:
        trtb.find_engines(info, "fp16", ENV)
    assert "no TensorRT engine" in str(e.value) and "build-engines --weights" in str(e.value)

    old = TrtEnvironment("10.3.0", ENV.gpu_name, ENV.compute_capability)
    for ckpt in info.stage_files:
        p = trtb.engine_path(ckpt, model_dir, old, "fp16")
        p.write_bytes(b"engine")
        trtb.metadata_path(p).write_text(json.dumps(_meta(tensorrt_version="10.3.0")))
    try:
        with pytest.raises(BackendError) as e:
            trtb.find_engines(info, "fp16", ENV)
        msg = str(e.value)
        assert "built with TensorRT 10.3.0" in msg and "10.8.0.43" in msg and "\n" not in msg
        assert f"python main.py build-engines --weights {model_dir} --precision fp16" in msg
        assert "TensorRT" in trtb.engines_problem(model_dir)   # never raises
    finally:
        for p in model_dir.glob("*.engine*"):
            p.unlink()


def test_profile_batches_cover_the_cascade():
    assert profile_batches(1, 11, 8) == (1, 1, 8)
    assert profile_batches(2, 11, 8) == (1, 11, 88)   # any B >= 1, tuned for one person
    assert profile_batches(3, 14, 1) == (1, 14, 14)


def test_fp16_graph_keeps_float32_io(model_dir):
    info = read_manifest(model_dir)
    path = info.onnx_files[1]
    m16 = to_fp16_onnx(onnx.load(str(path)))
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in m16.graph.initializer)
    crops = real_crops(info, 11, stage=2)
    if crops is None:
        pytest.skip("shared data not found")
    import onnxruntime as ort
    want = ortb.OnnxRuntimeRegressor(path, threads=1).regress(crops)
    got = ort.InferenceSession(m16.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"crops": crops})[0]
    err = np.abs(got - want).max()
    assert 0 < err < 2e-2, err   # fp16 rounding: present, and small


def test_tensorrt_backend_without_tensorrt_is_one_line(model_dir):
    if HAVE_TRT:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendError) as e:
        create_regressors(read_manifest(model_dir), "tensorrt")
    assert "\n" not in str(e.value) and "tensorrt" in str(e.value).lower()
    out = subprocess.run([sys.executable, str(REPO / "main.py"), "build-engines", "--weights", str(model_dir)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    first = "needs an NVIDIA GPU with CUDA, and none was found" if not torch.cuda.is_available() else "TensorRT is not installed"
    assert out.stderr.strip().count("\n") == 0 and first in out.stderr, out.stderr
    for precision in ("fp16", "fp32"):   # one precision flag (issue 12)
        out = subprocess.run([sys.executable, str(REPO / "main.py"), "build-engines", "--weights", str(model_dir),
                              "--precision", precision], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert out.returncode == 2 and first in out.stderr, out.stderr


# --------------------------------------------------------------------------- stand-in tensorrt

@pytest.fixture
def fake_trt(monkeypatch):
    return install_standin(monkeypatch)


def test_engines_of_a_stage_refining_some_joints_are_tuned_for_its_crops(tmp_path, fake_trt):
    """A stage that refines 4 of the 11 joints (its manifest ``joints``) crops 4 boxes per
    person: its engine's profile is tuned for 4 crops and takes up to 4 per person, not 11. Its
    regressor reports the crop side it takes, which load_cascade checks."""
    folder = make_random_model(tmp_path / "model", stages=2, seed=3)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stages"][1]["joints"] = ["l_elbow", "l_wrist", "r_elbow", "r_wrist"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    info = read_manifest(folder)
    build_engines(info, "fp32", max_persons=2)
    shapes = [c[1]["crops"] for c in fake_trt if c[0] == "build"]
    assert [tuple(s[0] for s in shape) for shape in shapes] == [(1, 1, 2), (1, 4, 8)]
    regs = trtb.create_tensorrt_regressors(info, "fp32", device="cpu")
    assert [r.input_side for r in regs] == [220, 220]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_run_engines_with_stand_in(model_dir, fake_trt, precision):
    info = read_manifest(model_dir)
    k = info.skeleton.k
    try:
        paths = build_engines(info, precision, max_persons=2)
        assert [p.name for p in paths] == [f"stage{s}.{trtb.engine_key(ENV, precision)}.engine" for s in (1, 2)]
        assert [c for c in fake_trt if c[0] == "create_network"] == [("create_network", 1 << _Flag.STRONGLY_TYPED)] * 2
        shapes = [c[1]["crops"] for c in fake_trt if c[0] == "build"]
        assert shapes == [((1, 3, 220, 220), (1, 3, 220, 220), (2, 3, 220, 220)),
                          ((1, 3, 220, 220), (k, 3, 220, 220), (2 * k, 3, 220, 220))]
        meta = json.loads(trtb.metadata_path(paths[1]).read_text())
        assert meta["precision"] == precision and meta["tensorrt_version"] == ENV.tensorrt_version
        assert meta["gpu_name"] == ENV.gpu_name and meta["compute_capability"] == "8.9"
        assert meta["onnx_sha256"] == file_sha256(info.onnx_files[1])
        assert meta["checkpoint_sha256"] == file_sha256(info.stage_files[1])

        regs = trtb.create_tensorrt_regressors(info, precision, device="cpu")
        assert regs[0].max_batch == 2 and regs[1].max_batch == 2 * k
        assert regs[0].description.startswith(f"tensorrt {ENV.tensorrt_version}") and precision in regs[0].description
        ref = ortb.create_onnxruntime_regressors(info, threads=1)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(5, 3, 220, 220)).astype(np.float32)
        fake_trt.clear()
        got = regs[0].regress(x)   # 5 persons > profile max 2: three executions
        assert [c for c in fake_trt if c[0] == "execute"] == [("execute", 2), ("execute", 2), ("execute", 1)]
        tol = 1e-4 if precision == "fp32" else 2e-2
        assert np.abs(got - ref[0].regress(x)).max() < tol

        frame = rng.integers(0, 256, (360, 540, 3), dtype=np.uint8)
        b0 = np.array([[270.0, 180.0, 200.0, 300.0]])
        a = Cascade(regs, info.skeleton, info.sigma).run(frame, b0).poses
        b = Cascade(ref, info.skeleton, info.sigma).run(frame, b0).poses
        assert np.abs(a - b).max() < (0.01 if precision == "fp32" else 5.0)

        # A changed checkpoint makes the engines stale: one line with the rebuild command.
        ckpt = torch.load(info.stage_files[1], weights_only=True)
        torch.save({**ckpt, "note": "retrained"}, info.stage_files[1])
        with pytest.raises(BackendError) as e:
            trtb.create_tensorrt_regressors(info, precision, device="cpu")
        assert "older checkpoint" in str(e.value) and f"--precision {precision}" in str(e.value)
        torch.save(ckpt, info.stage_files[1])
    finally:
        for p in model_dir.glob("*.engine*"):
            p.unlink()


def test_undeserializable_engine_says_rebuild(tmp_path, fake_trt):
    bad = tmp_path / "stage1.engine"
    bad.write_bytes(b"X-not-an-engine")
    with pytest.raises(BackendError) as e:
        trtb.TensorRTRegressor(bad, device="cpu", rebuild_hint="python main.py build-engines --weights w --fp16")
    assert "cannot load stage1.engine" in str(e.value) and "build-engines --weights w" in str(e.value)


# --------------------------------------------------------------------------- real TensorRT

@NEEDS_TRT
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_real_tensorrt_matches_onnxruntime(model_dir, precision, tol):
    info = read_manifest(model_dir)
    try:
        build_engines(info, precision, max_persons=2)
        regs = create_regressors(info, "tensorrt", precision=precision)
        ref = ortb.create_onnxruntime_regressors(info)
        crops = real_crops(info, 2 * info.skeleton.k, stage=2)
        if crops is None:
            pytest.skip("shared data not found")
        assert np.abs(regs[1].regress(crops) - ref[1].regress(crops)).max() < tol
    finally:
        for p in model_dir.glob("*.engine*"):
            p.unlink()
