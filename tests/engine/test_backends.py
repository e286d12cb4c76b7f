"""Runtime backends behind the regressor interface: names, availability, the automatic choice
and its reason, and the ONNX Runtime cascade against the PyTorch one on a real video frame."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import deeppose.engine.backends as backends
from deeppose.engine.backends import BackendError, create_regressors, describe_regressors, load_cascade, resolve_backend
from deeppose.engine.backends import onnxruntime_backend as ortb
from deeppose.engine.cascade import Cascade
from deeppose.engine.model import ModelError, read_manifest
from deeppose.tools.data.datasets import read_frames
from deeppose.tools.export.random_model import make_random_model
from support import REPO, WALKING

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """2-stage random FLIC model with its ONNX files already exported (fast exporter)."""
    folder = make_random_model(tmp_path_factory.mktemp("backends") / "model", stages=2, seed=1)
    return folder


@pytest.fixture(scope="module")
def frame():
    frames = read_frames(WALKING, 1, start=60)
    if not frames:
        pytest.skip(f"shared video not found: {WALKING}")
    return frames[0]


def test_names_and_aliases():
    assert backends.canonical_name("ORT") == "onnxruntime"
    assert backends.canonical_name("trt") == "tensorrt"
    assert backends.canonical_name("auto") == "auto"
    with pytest.raises(BackendError) as e:
        backends.canonical_name("openvino")
    assert "openvino" in str(e.value) and "onnxruntime" in str(e.value)


def test_physical_cores():
    n = backends.physical_cores()
    assert 1 <= n <= (os.cpu_count() or 1)


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only choice")
def test_cpu_machine_choice():
    assert backends.available_backends() == ["onnxruntime", "torch"]
    name, reason = resolve_backend("auto")
    assert name == "onnxruntime" and reason.startswith("auto:") and "CPU" in reason
    status = backends.backend_status()
    assert status["tensorrt"][0] is False and status["tensorrt"][1]


def test_unavailable_backend_is_a_one_line_error(model_dir, monkeypatch):
    monkeypatch.setattr(backends, "_cuda_available", lambda: True)
    monkeypatch.setattr(backends, "_has_module", lambda name: name != "tensorrt")
    with pytest.raises(BackendError) as e:
        create_regressors(read_manifest(model_dir), "tensorrt")
    msg = str(e.value)
    assert "tensorrt" in msg and "not installed" in msg and "\n" not in msg
    assert isinstance(e.value, ModelError)   # commands that catch ModelError catch it too


def test_tensorrt_without_gpu_says_so_first(model_dir, monkeypatch):
    """Without a GPU the reason is the missing GPU, even when the tensorrt package is missing
    too (installing it would not help); issue 12."""
    monkeypatch.setattr(backends, "_cuda_available", lambda: False)
    for installed in (True, False):
        monkeypatch.setattr(backends, "_has_module", lambda name, ok=installed: ok or name != "tensorrt")
        with pytest.raises(BackendError) as e:
            create_regressors(read_manifest(model_dir), "tensorrt")
        msg = str(e.value)
        assert "needs an NVIDIA GPU with CUDA, and none was found" in msg and "\n" not in msg
        assert "not installed" not in msg


def test_onnxruntime_cascade_matches_torch(model_dir, frame):
    """The same model on both CPU backends gives the same poses on a real frame."""
    info = read_manifest(model_dir)
    b0 = np.array([[640.0, 380.0, 300.0, 600.0], [400.0, 300.0, 250.0, 500.0]])
    poses = {}
    for name in ("torch", "onnxruntime"):
        regs = create_regressors(info, name, threads=1, **({"device": "cpu"} if name == "torch" else {}))
        assert len(regs) == 2 and all(r.name == name for r in regs)
        desc = describe_regressors(regs)
        assert desc.startswith(name) and "1 threads" in desc
        res = Cascade(regs, info.skeleton, info.sigma, info.input_size).run(frame, b0)
        poses[name] = res.stage_poses
    assert poses["torch"].shape == (2, 2, info.skeleton.k, 2)
    # Stage-2 crops sit where stage 1 put them, so differences carry over: still far below a pixel.
    assert np.abs(poses["torch"] - poses["onnxruntime"]).max() < 0.01
    # Not a vacuous match: the poses move between stages and spread over the box.
    assert np.abs(poses["torch"][1] - poses["torch"][0]).max() > 1.0
    assert poses["torch"][0, 0, :, 0].std() > 5.0


def test_regressor_runs_any_batch_in_one_call(model_dir):
    info = read_manifest(model_dir)
    (r1, r2) = create_regressors(info, "onnxruntime", threads=1)
    rng = np.random.default_rng(0)
    for n in (1, 11, 23):
        x = rng.normal(size=(n, 3, 220, 220)).astype(np.float32)
        out = r2.regress(x)
        assert out.shape == (n, 2 * info.skeleton.k) and out.dtype == np.float32
    calls = []
    real = r1.session.run
    r1.session.run = lambda *a, **k: calls.append(a[1]["crops"].shape) or real(*a, **k)
    r1.regress(np.zeros((5, 3, 220, 220), np.float32))
    assert calls == [(5, 3, 220, 220)]


def test_auto_resolves_and_says_why(model_dir):
    info = read_manifest(model_dir)
    regs = create_regressors(info, "auto", threads=1)
    expected, _ = resolve_backend("auto", model_dir)
    assert regs[0].name == expected
    assert regs[0].reason.startswith("auto:")
    assert "[auto:" in describe_regressors(regs)


def test_auto_falls_back_to_torch_when_onnx_fails(model_dir, monkeypatch):
    if not NO_CUDA:
        pytest.skip("on a GPU machine auto does not pick onnxruntime")

    def broken(*a, **k):
        raise BackendError("ONNX export failed (simulated)")
    monkeypatch.setattr(ortb, "create_onnxruntime_regressors", broken)
    regs = create_regressors(read_manifest(model_dir), "auto", threads=1)
    assert regs[0].name == "torch"
    assert "onnxruntime failed" in regs[0].reason and "simulated" in regs[0].reason


def test_load_cascade_with_backends(model_dir, frame):
    """engine.model.load_cascade hands every non-torch name (auto too) to create_regressors."""
    b0 = np.array([[640.0, 380.0, 300.0, 600.0]])
    out = {}
    for name in ("torch", "onnxruntime", "auto"):
        cascade, info = load_cascade(model_dir, name)
        assert cascade.num_stages == 2
        out[name] = cascade.run(frame, b0).poses
        assert describe_regressors(cascade.regressors).split()[0] in ("torch", "onnxruntime")
    assert np.abs(out["torch"] - out["onnxruntime"]).max() < 0.01


def test_benchmark_command_prints_the_table(model_dir, tmp_path):
    """A short benchmark run on the CPU backends prints both tables and writes the JSON."""
    js = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "main.py"), "benchmark", "--weights", str(model_dir), "--runs", "3",
           "--warmup", "1", "--backend", "torch,onnxruntime", "--threads", "1", "--json", str(js)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for needle in ("machine:", "load average", "auto:", "Cascade only", "End to end", "onnxruntime", "torch"):
        assert needle in text, needle
    import json
    report = json.loads(js.read_text())
    measured = [r for r in report["results"] if "cascade" in r]
    assert {r["backend"] for r in measured} == {"torch", "onnxruntime"}
    for r in measured:
        assert len(r["cascade"]["stages"]) == 2 and r["fps"] > 0
        assert r["cascade"]["stages"][1]["network"]["median_ms"] > 0
