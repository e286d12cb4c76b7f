"""int8 ONNX Runtime stages (tools/export/quantize_int8.py, ``--int8``; issue 10 part 4): built from
training crops, loaded only when asked for, refused with a one-line error when missing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import main
from deeppose.engine.backends import BackendError, create_regressors, describe_regressors
from deeppose.engine.cascade import Cascade
from deeppose.engine.model import read_manifest
from deeppose.tools.data.datasets import read_frames
from deeppose.tools.export.random_model import make_random_model
from support import WALKING, require_data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_random_model(tmp_path_factory.mktemp("int8") / "model", stages=2, seed=3)


def test_missing_int8_stages_are_a_one_line_error(model_dir):
    with pytest.raises(BackendError) as e:
        create_regressors(read_manifest(model_dir), "onnxruntime", int8=True)
    assert "stage1.int8.onnx is missing" in str(e.value) and "quantize-int8" in str(e.value)
    assert "\n" not in str(e.value)


def test_int8_needs_onnxruntime(capsys, tmp_path):
    rc = main.main(["video", str(tmp_path / "x.mp4"), "--int8", "--backend", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--int8 runs on ONNX Runtime" in err[0], err


def test_quantized_stages_load_and_follow_the_float_ones(model_dir):
    require_data("flic")
    from deeppose.tools.export.quantize_int8 import quantize_model

    written = quantize_model(model_dir, examples=4)
    assert [p.name for p in written] == ["stage1.int8.onnx", "stage2.int8.onnx"]
    info = read_manifest(model_dir)
    float_regs = create_regressors(info, "onnxruntime", threads=1)
    int8_regs = create_regressors(info, "onnxruntime", threads=1, int8=True)
    assert describe_regressors(int8_regs, reason=False).endswith("threads, int8)")
    assert "int8" not in describe_regressors(float_regs)
    meta = int8_regs[0].metadata
    assert "int8" in meta["quantization"]
    assert meta["checkpoint_sha256"] == float_regs[0].metadata["checkpoint_sha256"]   # staleness check covers it
    frame = read_frames(WALKING, 1, start=60)[0]
    b0 = np.array([[640.0, 380.0, 300.0, 600.0]])
    poses = [Cascade(r, info.skeleton, info.sigma, info.input_size).run(frame, b0).stage_poses for r in
             (float_regs, int8_regs)]
    # Really another graph: its joints differ by 1.3 px (stage 1) and 1.6 px (stage 2) here. "Not
    # bit-equal" would also pass the float graph again in another session (last-bit noise, ~1e-4 px).
    assert np.abs(poses[0] - poses[1]).max() > 0.1
    # Quantization noise only: the joints stay within a few percent of the 600 px box.
    assert np.abs(poses[0] - poses[1]).max() < 0.05 * 600


def test_calibration_caches_build_the_same_int8_stages_without_data(model_dir, tmp_path):
    """quantize-int8 keeps the measured activation ranges (stageN.int8-calibration.json, tagged
    with the checkpoint's SHA-256); from them the int8 stages are built again, byte for byte,
    without any training data (what make onnx does for the shipped models), and a cache
    measured for another checkpoint is refused with the command that measures it again."""
    require_data("flic")
    import json
    import shutil

    from deeppose.engine.backends.common import file_sha256
    from deeppose.tools.export.quantize_int8 import calibration_path, check_calibration, quantize_model

    folder = shutil.copytree(model_dir, tmp_path / "model")
    first = [p.read_bytes() for p in quantize_model(folder, examples=4, recalibrate=True)]
    info = read_manifest(folder)
    for onnx, ckpt in zip(info.onnx_files, info.stage_files):
        tag = json.loads(calibration_path(onnx).read_text())["deeppose"]
        assert tag["checkpoint_sha256"] == file_sha256(ckpt) and tag["examples"] == 4
        onnx.with_name(onnx.stem + ".int8.onnx").unlink()
    again = quantize_model(folder, data=str(tmp_path / "no-data-here"))
    assert [p.read_bytes() for p in again] == first
    with open(folder / "stage2.pt", "ab") as f:   # a retrained stage 2: export first, then recalibrate
        f.write(b"\0")
    with pytest.raises(BackendError, match="stage2.onnx .* was exported from an older stage2.pt"):
        quantize_model(folder, data=str(tmp_path / "no-data-here"))
    with pytest.raises(ValueError, match=r"stage2.int8-calibration.json was measured for another stage2.pt.*"
                                         r"--recalibrate"):
        check_calibration(calibration_path(folder / "stage2.onnx"), folder / "stage2.pt")
    check_calibration(calibration_path(folder / "stage1.onnx"), folder / "stage1.pt")


def _with_records(folder, float_pdj: float | None, int8_pdj: float | None, shas, calibration, flip="off",
                  face_runtime="litert") -> None:
    """Give a model folder float val metrics (flip off, faces by LiteRT) and an int8 record of its
    last stage in int8 (last stage's mean PDJ@0.2, measured with ``flip`` and ``face_runtime``)."""
    from deeppose.engine.model import write_manifest

    m = read_manifest(folder).manifest.to_dict()
    m.pop("format", None)
    last = f"stage{len(m['stages'])}"
    m["val_metrics"] = None if float_pdj is None else {last: {"pdj@0.2": {"mean": float_pdj}}}
    m["val_protocol"] = {"split": "val", "examples": 531, "flip": "off", "face_runtime": "litert"}
    m.pop("int8", None)
    if int8_pdj is not None:
        m["int8"] = {"stages": [len(m["stages"])], "val_metrics": {last: {"pdj@0.2": {"mean": int8_pdj}}},
                     "val_protocol": {"split": "val", "examples": 531, "flip": flip, "face_runtime": face_runtime,
                                      "checkpoint_sha256": shas, "calibration_sha256": calibration}}
    write_manifest(folder, m)


def test_auto_precision_runs_int8_only_where_its_validation_passes(model_dir, tmp_path):
    """The default (int8=None): the int8 copies of the stages the manifest's int8 record names
    run where it is within 0.01 PDJ@0.2 of the float model (issue 10's rule), was measured with
    these checkpoints, and the copies are built; otherwise the float graphs, with the reason."""
    require_data("flic")
    import shutil

    from deeppose.tools.export.quantize_int8 import quantize_model

    folder = shutil.copytree(model_dir, tmp_path / "model")
    quantize_model(folder, examples=4, recalibrate=True)
    regs = create_regressors(read_manifest(folder), "onnxruntime", int8=[2])
    shas = [r.metadata["checkpoint_sha256"] for r in regs]
    calibration = [r.metadata.get("calibration_sha256") for r in regs]
    assert calibration[0] is None and len(calibration[1]) == 64   # the int8 copy names its calibration cache
    for r in regs:
        r.close()

    def chosen(**kw):
        regs = create_regressors(read_manifest(folder), "onnxruntime", threads=1, **kw)
        for r in regs:
            r.close()
        return "".join("i" if r.int8 else "f" for r in regs), regs[0].reason

    _with_records(folder, 0.861, None, shas, calibration)
    kind, reason = chosen()
    assert kind == "ff" and reason.endswith("; float (no int8 validation in the manifest)")
    _with_records(folder, 0.861, 0.853, shas, calibration)
    kind, reason = chosen()
    assert kind == "fi" and reason.endswith("; stage 2 int8: val PDJ@0.2 0.853, float 0.861")
    regs = create_regressors(read_manifest(folder), "onnxruntime")
    assert describe_regressors(regs).endswith("threads, int8 stage 2)")
    for r in regs:
        r.close()
    assert chosen(int8=False)[0] == "ff" and chosen(int8=True)[0] == "ii" and chosen(int8=[1])[0] == "if"
    _with_records(folder, 0.861, 0.853, shas, calibration, flip="all")
    kind, reason = chosen()
    assert kind == "ff" and reason.endswith("; float (the int8 record was measured with another flip than the float metrics)")
    _with_records(folder, 0.861, 0.853, shas, calibration, face_runtime="mediapipe")   # other faces, other b0
    kind, reason = chosen()
    assert kind == "ff" and reason.endswith("with another face_runtime than the float metrics)")
    _with_records(folder, 0.861, 0.850, shas, calibration)   # 0.011 lower
    kind, reason = chosen()
    assert kind == "ff" and reason.endswith("; float (stage 2 int8: val PDJ@0.2 0.850, float 0.861: more than 0.01 lower)")
    for other in ((shas[::-1], calibration), (shas, calibration[::-1])):   # retrained, or recalibrated
        _with_records(folder, 0.861, 0.870, *other)
        kind, reason = chosen()
        assert kind == "ff" and "measured with other checkpoints or calibration" in reason, reason
        assert "evaluate --int8 --int8-stages 2 --write-manifest" in reason
    _with_records(folder, 0.861, 0.870, shas, calibration)
    (folder / "stage2.int8.onnx").unlink()
    kind, reason = chosen()
    assert kind == "ff" and "stage2.int8.onnx is missing" in reason
    with pytest.raises(BackendError, match="stage2.int8.onnx is missing"):
        create_regressors(read_manifest(folder), "onnxruntime", int8=True)


def test_int8_asked_for_makes_auto_onnxruntime(model_dir, tmp_path, monkeypatch):
    """--int8 with --backend auto runs ONNX Runtime even where auto would pick a GPU backend
    (the int8 copies are ONNX Runtime's), decided where the backend is chosen."""
    require_data("flic")
    import shutil

    import deeppose.engine.backends as backends
    from deeppose.tools.export.quantize_int8 import quantize_model

    folder = shutil.copytree(model_dir, tmp_path / "model")
    quantize_model(folder, examples=4, recalibrate=True)
    monkeypatch.setattr(backends, "_cuda_available", lambda: True)   # auto alone: a GPU backend
    assert backends.resolve_backend("auto")[0] != "onnxruntime"
    regs = create_regressors(read_manifest(folder), "auto", threads=1, int8=[2])
    assert [(r.name, r.int8) for r in regs] == [("onnxruntime", False), ("onnxruntime", True)]
    for r in regs:
        r.close()


@pytest.mark.parametrize("model", ["flic", "lsp"])
def test_shipped_models_run_stage_3_in_int8_by_default(model):
    """Both psi v1 shipped models carry calibration caches and a passing int8 record of stage 3
    (the costliest; stages 1 and 2 in int8 cost the walker of walking.mp4 frames and made
    tracking by pose lose him more often), and make onnx builds their int8 copies: the default
    CPU backend runs stage 3 in int8 (--no-int8: float)."""
    from support import REPO

    folder = REPO / "weights" / model
    info = read_manifest(folder)
    if not all(p is not None and p.is_file() for p in info.onnx_files):
        pytest.skip(f"the ONNX files of {folder} are not built (make onnx)")
    regs = create_regressors(info, "onnxruntime", threads=1)
    assert [r.int8 for r in regs] == [False, False, True], regs[0].reason
    assert "; stage 3 int8: val PDJ@0.2" in regs[0].reason
    assert not any(r.int8 for r in create_regressors(info, "onnxruntime", threads=1, int8=False))


def test_the_body_model_runs_float_by_default_and_its_refinement_stages_in_int8_when_asked():
    """weights/body carries calibration caches (make onnx builds its int8 copies), but no int8
    record: its int8 stages 2 and 3 read val as float, yet following everyone on walking.mp4 they
    found 0.517 of the counted faces against 0.707 (docs/SPEED.md; so did the MobileNetV2 cascade's
    int8 stage 2 before it). It runs float by default, and int8 where --int8 asks for it."""
    from support import REPO

    folder = REPO / "weights" / "body"
    info = read_manifest(folder)
    assert [p.name for p in folder.glob("stage*.int8-calibration.json")] != []
    if not all(p is not None and p.is_file() for p in info.onnx_files):
        pytest.skip(f"the ONNX files of {folder} are not built (make onnx)")
    regs = create_regressors(info, "onnxruntime", threads=1)
    assert [r.int8 for r in regs] == [False, False, False] and "no int8 validation" in regs[0].reason
    assert [r.int8 for r in create_regressors(info, "onnxruntime", threads=1, int8=[2, 3])] == [False, True, True]


def test_a_calibration_cache_of_another_export_is_refused(model_dir, tmp_path):
    """A cache whose tensor names the exported graph lacks (another exporter version) is
    refused in one line instead of quantizing with missing ranges."""
    require_data("flic")
    import json
    import shutil

    from deeppose.tools.export.quantize_int8 import calibration_path, quantize_model

    folder = shutil.copytree(model_dir, tmp_path / "model")
    quantize_model(folder, examples=4, recalibrate=True)
    cache = calibration_path(folder / "stage1.onnx")
    payload = json.loads(cache.read_text())
    payload["data"] = {f"renamed_{k}": v for k, v in payload["data"].items()}
    cache.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"stage1.int8-calibration.json names tensors that stage1.onnx lacks "
                                         r"\(renamed_.*--recalibrate") as e:
        quantize_model(folder, data=str(tmp_path / "no-data-here"))
    assert "\n" not in str(e.value)


def test_int8_stages_option(capsys):
    """evaluate --int8-stages takes stage numbers (what --write-manifest records as the default)."""
    import argparse

    from deeppose.tools.eval.evaluate import _stage_list

    assert _stage_list("3") == [3] and _stage_list("2,3") == [2, 3]
    for bad in ("0", "x", "", "1,-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _stage_list(bad)
    assert main.main(["evaluate", "--int8", "--int8-stages", "zero"]) == 2
    assert "expected stage numbers" in capsys.readouterr().err
    assert main.main(["evaluate", "--dataset", "flic", "--int8-stages", "3"]) == 2
    assert "give --int8 too" in capsys.readouterr().err


def test_a_failed_recalibration_leaves_the_caches_and_copies_as_they_were(model_dir, tmp_path, monkeypatch):
    """--recalibrate writes the new caches and int8 copies only once every stage is done: a
    failure at stage 2 leaves stage 1's tracked cache and copy untouched."""
    require_data("flic")
    import shutil

    import onnxruntime.quantization as q

    from deeppose.tools.export.quantize_int8 import calibration_path, quantize_model

    folder = shutil.copytree(model_dir, tmp_path / "model")
    quantize_model(folder, examples=4, recalibrate=True)
    files = [calibration_path(folder / f"stage{s}.onnx") for s in (1, 2)] + [folder / "stage1.int8.onnx",
                                                                              folder / "stage2.int8.onnx"]
    before = [p.read_bytes() for p in files]
    real, calls = q.quantize_static, []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(q, "quantize_static", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        quantize_model(folder, examples=3, recalibrate=True)
    assert [p.read_bytes() for p in files] == before


def test_a_body_model_calibrates_on_flic_and_lsp(tmp_path, monkeypatch):
    """A body model (psi v2's union skeleton) has no dataset of its own: its calibration crops
    come from FLIC's and LSP's training images together, and --data is refused for it."""
    require_data("flic")
    require_data("lsp")
    import deeppose.tools.data.datasets as datasets
    from deeppose.tools.export.quantize_int8 import calibration_inputs

    folder = make_random_model(tmp_path / "body", skeleton="body", stages=2, seed=4)
    seen, load = [], datasets.load_image

    def spy(path):
        seen.append(Path(path).parts[-3])   # .../<dataset>/images/<file>
        return load(path)

    monkeypatch.setattr(datasets, "load_image", spy)
    inputs = calibration_inputs(folder, examples=40)
    assert {"flic", "lsp"} <= set(seen), seen
    assert sum(len(b) for b in inputs[0]) == len(seen)   # one stage-1 crop per image
    with pytest.raises(ValueError, match="give no --data"):
        calibration_inputs(folder, examples=2, data=str(tmp_path))
