"""ONNX export of the cascade's stages: parity with PyTorch on real crops, dynamic batch axis,
recorded opset and checksum, the checksum-keyed cache, and the export-onnx command."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deeppose.engine.backends import BackendError
from deeppose.engine.backends import onnxruntime_backend as ortb
from deeppose.engine.model import load_stage_module, read_manifest
from deeppose.tools.benchmark import make_random_model
from deeppose.tools.export_onnx import parity, real_crops

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A 2-stage FLIC model with random weights whose outputs spread like a trained model's."""
    return make_random_model(tmp_path_factory.mktemp("export") / "model", stages=2, seed=3)


@pytest.fixture(scope="module")
def crops(model_dir):
    info = read_manifest(model_dir)
    c1, c2 = real_crops(info, 3, stage=1), real_crops(info, 2 * info.skeleton.k, stage=2)
    if c1 is None:
        pytest.skip("shared data (walking.mp4 or FLIC images) not found")
    return c1, c2


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_parity_on_real_crops(model_dir, crops, tmp_path, exporter):
    """max |PyTorch - ONNX Runtime| < 1e-4 normalized, at several batch sizes of one session."""
    if exporter == "dynamo" and ortb.default_exporter() != "dynamo":
        pytest.skip("onnxscript is not installed (the dynamo exporter needs it)")
    info = read_manifest(model_dir)
    c1, c2 = crops
    for stage, batch_crops in ((1, c1), (2, c2)):
        module = load_stage_module(info.stage_files[stage - 1], info.skeleton.k)
        path = tmp_path / f"stage{stage}.onnx"
        ortb.export_stage_onnx(module, path, "persons" if stage == 1 else "persons_x_k", exporter=exporter)
        with torch.no_grad():
            want = module(torch.from_numpy(batch_crops)).numpy()
        assert want.std() > 0.05, "outputs too small for the comparison to mean anything"
        reg = ortb.OnnxRuntimeRegressor(path, threads=1)
        for n in (1, len(batch_crops) // 2, len(batch_crops)):   # dynamic batch axis
            got = reg.regress(batch_crops[:n])
            assert got.shape == (n, 2 * info.skeleton.k) and got.dtype == np.float32
            assert np.abs(got - want[:n]).max() < ortb.PARITY_TOLERANCE
        assert parity(module, path, batch_crops) < ortb.PARITY_TOLERANCE


def test_parity_detects_a_wrong_graph(model_dir, crops, tmp_path):
    """The parity measure is not blind: another stage's graph differs by far more than 1e-4."""
    info = read_manifest(model_dir)
    s1 = load_stage_module(info.stage_files[0], info.skeleton.k)
    s2 = load_stage_module(info.stage_files[1], info.skeleton.k)
    path = tmp_path / "s2.onnx"
    ortb.export_stage_onnx(s2, path, exporter="torchscript")
    assert parity(s1, path, crops[0]) > 1e-2


def test_cache_metadata_and_dynamic_axis(model_dir, monkeypatch):
    info = read_manifest(model_dir)
    paths = ortb.ensure_onnx(info, exporter="torchscript")
    assert [p.parent for p in paths] == [model_dir, model_dir]
    for s, (ckpt, path) in enumerate(zip(info.stage_files, paths), start=1):
        sha = ortb.file_sha256(ckpt)
        assert path.name == f"stage{s}.{sha[:16]}.onnx"
        meta = ortb.onnx_metadata(path)
        assert meta["opset"] == meta["opset_imported"] == str(ortb.OPSET)
        assert meta["checkpoint_sha256"] == sha and meta["stage"] == str(s)
        model = onnx.load(str(path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert model.graph.input[0].name == "crops" and model.graph.output[0].name == "coords"
        assert dims[0].dim_param == ("persons" if s == 1 else "persons_x_k")
        assert [d.dim_value for d in dims[1:]] == [3, 220, 220]

    # A second call reuses the cached files: exporting again would fail here.
    monkeypatch.setattr(ortb, "export_stage_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-export")))
    assert ortb.ensure_onnx(info) == paths


def test_changed_checkpoint_is_exported_again(tmp_path):
    folder = make_random_model(tmp_path / "m", stages=1, seed=5)
    info = read_manifest(folder)
    (old,) = ortb.ensure_onnx(info, exporter="torchscript")
    ckpt = torch.load(info.stage_files[0], weights_only=True)
    ckpt["state_dict"]["head.7.bias"] += 0.1
    torch.save(ckpt, info.stage_files[0])
    (new,) = ortb.ensure_onnx(info, exporter="torchscript")
    assert new != old and new.is_file() and not old.exists()   # stale export removed
    reg = ortb.OnnxRuntimeRegressor(new, threads=1)
    out = reg.regress(np.zeros((1, 3, 220, 220), np.float32))
    module = load_stage_module(info.stage_files[0], info.skeleton.k)
    with torch.no_grad():
        assert np.abs(out - module(torch.zeros(1, 3, 220, 220)).numpy()).max() < 1e-4


def test_read_only_model_folder_uses_user_cache(tmp_path, monkeypatch):
    folder = make_random_model(tmp_path / "ro", stages=1, seed=6)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ortb, "is_writable", lambda f: Path(f) != folder)
    (path,) = ortb.ensure_onnx(read_manifest(folder), exporter="torchscript")
    assert path.parent == ortb.default_cache_dir(folder)
    assert str(path).startswith(str(tmp_path / "cache" / "deeppose" / "onnx"))


def test_unloadable_onnx_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError) as e:
        ortb.OnnxRuntimeRegressor(bad)
    assert "bad.onnx" in str(e.value) and "\n" not in str(e.value)


def test_export_onnx_command(model_dir, crops, tmp_path):
    folder = tmp_path / "cli"
    shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("*.onnx"))
    cmd = [sys.executable, str(REPO / "main.py"), "export-onnx", "--weights", str(folder), "--exporter", "torchscript"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("stage ")]
    assert len(lines) == 2 and all("opset 18" in ln and ln.endswith("ok") for ln in lines)
    assert "onnxruntime" in out.stdout   # the backend used for the check is named
    missing = subprocess.run([sys.executable, str(REPO / "main.py"), "export-onnx", "--weights", str(tmp_path / "none")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
