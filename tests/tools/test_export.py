"""ONNX export of the cascade's stages (build time): parity with PyTorch on real crops, dynamic
batch axis, recorded opset and checksum, files named in the manifest, lossless fp16 storage,
stale and missing files refused by the runtime with the fix, and the export-onnx command."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deeppose.engine.backends import BackendError, create_regressors
from deeppose.engine.backends import onnxruntime_backend as ortb
from deeppose.engine.backends.common import file_sha256
from deeppose.engine.model import ModelError, load_stage_module, read_manifest
from deeppose.tools.export.export_onnx import (
    OPSET,
    PARITY_TOLERANCE,
    compact_initializers,
    default_exporter,
    expand_initializers,
    export_model,
    export_stage_onnx,
    onnx_metadata,
    parity,
    real_crops,
)
from deeppose.tools.export.random_model import make_random_model
from support import REPO


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A 2-stage FLIC model with random weights whose outputs spread like a trained model's."""
    return make_random_model(tmp_path_factory.mktemp("export") / "model", stages=2, seed=3, onnx=False)


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
    if exporter == "dynamo" and default_exporter() != "dynamo":
        pytest.skip("onnxscript is not installed (the dynamo exporter needs it)")
    info = read_manifest(model_dir)
    c1, c2 = crops
    for stage, batch_crops in ((1, c1), (2, c2)):
        module = load_stage_module(info.stage_files[stage - 1], info.skeleton.k)
        path = tmp_path / f"stage{stage}.onnx"
        export_stage_onnx(module, path, "persons" if stage == 1 else "persons_x_k", exporter=exporter)
        with torch.no_grad():
            want = module(torch.from_numpy(batch_crops)).numpy()
        assert want.std() > 0.05, "outputs too small for the comparison to mean anything"
        reg = ortb.OnnxRuntimeRegressor(path, threads=1)
        for n in (1, len(batch_crops) // 2, len(batch_crops)):   # dynamic batch axis
            got = reg.regress(batch_crops[:n])
            assert got.shape == (n, 2 * info.skeleton.k) and got.dtype == np.float32
            assert np.abs(got - want[:n]).max() < PARITY_TOLERANCE
        assert parity(module, path, batch_crops) < PARITY_TOLERANCE


def test_parity_detects_a_wrong_graph(model_dir, crops, tmp_path):
    """The parity measure is not blind: another stage's graph differs by far more than 1e-4."""
    info = read_manifest(model_dir)
    s1 = load_stage_module(info.stage_files[0], info.skeleton.k)
    s2 = load_stage_module(info.stage_files[1], info.skeleton.k)
    path = tmp_path / "s2.onnx"
    export_stage_onnx(s2, path, exporter="torchscript")
    assert parity(s1, path, crops[0]) > 1e-2


def test_export_model_names_files_in_manifest(model_dir, monkeypatch):
    folder = model_dir
    paths = export_model(folder, exporter="torchscript")
    info = read_manifest(folder)
    assert info.onnx_files == paths == [folder / "stage1.onnx", folder / "stage2.onnx"]
    for s, (ckpt, path) in enumerate(zip(info.stage_files, paths), start=1):
        sha = file_sha256(ckpt)
        meta = onnx_metadata(path)
        assert meta["opset"] == meta["opset_imported"] == str(OPSET)
        assert meta["checkpoint_sha256"] == sha and meta["stage"] == str(s)
        model = onnx.load(str(path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert model.graph.input[0].name == "crops" and model.graph.output[0].name == "coords"
        assert dims[0].dim_param == ("persons" if s == 1 else "persons_x_k")
        assert [d.dim_value for d in dims[1:]] == [3, 220, 220]

    # A second call finds the files up to date: exporting again would fail here.
    import deeppose.tools.export.export_onnx as exp
    monkeypatch.setattr(exp, "export_stage_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-export")))
    assert export_model(folder) == paths


def test_fp16_initializers_are_lossless_and_half_size(flic_weights, tmp_path):
    """The shipped graphs store fp16-exact weights as fp16 + Cast: expanding them back gives
    the same outputs, in about half the bytes for those weights."""
    info = read_manifest(flic_weights)
    path, side = info.onnx_files[1], info.stage_input_sizes[1]
    compact = onnx.load(str(path))
    assert int(onnx_metadata(path)["fp16_initializers"]) > 0
    n16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in compact.graph.initializer)
    plain = onnx.load(str(path))
    assert expand_initializers(plain) == n16 > 0
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in plain.graph.initializer)
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    assert path.stat().st_size < 0.75 * (tmp_path / "plain.onnx").stat().st_size
    x = np.random.default_rng(0).normal(size=(4, 3, side, side)).astype(np.float32)
    # Lossless: equal outputs here (max difference 0, 1 or 2 threads), held to 1e-6 rather than to
    # their bits (two graphs, two sessions; last-bit noise on outputs of about 0.1 is ~1e-8). Every
    # weight rounded to fp16 instead would move them by 4e-5.
    with ortb.OnnxRuntimeRegressor(path, threads=1) as a, ortb.OnnxRuntimeRegressor(tmp_path / "plain.onnx", threads=1) as b:
        assert np.abs(a.regress(x) - b.regress(x)).max() < 1e-6
    assert compact_initializers(plain) == n16   # and compacting again gives the same conversion


def test_changed_checkpoint_makes_the_onnx_stale(tmp_path):
    """The runtime refuses a file exported from another checkpoint, naming the fix; export-onnx
    then exports it again."""
    folder = make_random_model(tmp_path / "m", stages=1, seed=5)
    info = read_manifest(folder)
    ckpt = torch.load(info.stage_files[0], weights_only=True)
    ckpt["state_dict"]["head.7.bias"] += 0.1
    torch.save(ckpt, info.stage_files[0])
    with pytest.raises(BackendError) as e:
        create_regressors(info, "onnxruntime")
    assert "older stage1.pt" in str(e.value) and f"export-onnx --weights {folder}" in str(e.value)
    (new,) = export_model(folder, exporter="torchscript")
    (reg,) = create_regressors(read_manifest(folder), "onnxruntime", threads=1)
    out = reg.regress(np.zeros((1, 3, 220, 220), np.float32))
    module = load_stage_module(info.stage_files[0], info.skeleton.k)
    with torch.no_grad():
        assert np.abs(out - module(torch.zeros(1, 3, 220, 220)).numpy()).max() < 1e-4


def test_missing_onnx_is_a_one_line_error_with_the_fix(tmp_path):
    folder = make_random_model(tmp_path / "m", stages=2, seed=6, onnx=False)
    with pytest.raises(BackendError) as e:
        create_regressors(read_manifest(folder), "onnxruntime")
    msg = str(e.value)
    assert "stage 1" in msg and "names no ONNX file" in msg and "export-onnx --weights" in msg and "\n" not in msg
    export_model(folder, exporter="torchscript")
    (folder / "stage2.onnx").unlink()
    with pytest.raises(BackendError, match="stage2.onnx, which is missing"):
        create_regressors(read_manifest(folder), "onnxruntime")


def test_export_to_a_runtime_only_folder(model_dir, tmp_path):
    export_model(model_dir, exporter="torchscript")   # the reference (up to date: no export)
    out = tmp_path / "deploy"
    export_model(model_dir, out, exporter="torchscript")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "stage1.onnx", "stage2.onnx"]
    regs = create_regressors(read_manifest(out), "onnxruntime", threads=1)
    x = np.zeros((2, 3, 220, 220), np.float32)
    ref = create_regressors(read_manifest(model_dir), "onnxruntime", threads=1)
    assert np.abs(regs[1].regress(x) - ref[1].regress(x)).max() < 1e-6   # the same graph (measured 0), as above
    with pytest.raises(ModelError, match="stage1.pt is missing"):
        create_regressors(read_manifest(out), "torch")


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
    assert read_manifest(folder).onnx_files == [folder / "stage1.onnx", folder / "stage2.onnx"]
    missing = subprocess.run([sys.executable, str(REPO / "main.py"), "export-onnx", "--weights", str(tmp_path / "none")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
