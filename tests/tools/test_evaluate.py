"""`main.py evaluate`: the oracle on the real FLIC and LSP poses, the noisy oracle, the JSON and PNG
outputs, one-line errors, and the model-cascade path (random weights, stand-in b0)."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import deeppose.tools.eval.evaluate as evaluate
import main
from support import REPO, make_random_model, require_data

SKIP_KEYS = {"counts", "correct", "pdj_counts", "fractions", "threshold", "stage"}


def scores(node, path=""):
    """Every score (fraction) in a stage's JSON, as (path, value); counts and fractions left out."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in SKIP_KEYS:
                yield from scores(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from scores(v, f"{path}[{i}]")
    else:
        yield path, node


def run_cli(argv, capsys):
    rc = main.main(["evaluate", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def no_image_decoding(monkeypatch):
    """Make any image decode fail: the oracle must not need one."""
    import cv2

    from deeppose.tools.data import datasets  # the module itself: unimported when this file runs alone

    def refuse(*a, **k):
        raise AssertionError("the oracle decoded an image")

    monkeypatch.setattr(cv2, "imread", refuse)
    monkeypatch.setattr(datasets, "load_image", refuse)


def test_help_and_light_import(capsys):
    with pytest.raises(SystemExit) as e:
        main.main(["evaluate", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--dataset", "--split", "--weights", "--stages", "--backend", "--limit", "--json", "--plot",
                "--oracle", "--oracle-noise"):
        assert opt in text
    code = "import sys, tools.eval.evaluate; print(sorted({'torch', 'cv2', 'matplotlib', 'numpy'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize("name,limit", [("flic", 200), ("lsp", None)])
def test_oracle_scores_one_everywhere(name, limit, tmp_path, capsys, no_image_decoding):
    require_data(name)
    js = tmp_path / "oracle.json"
    argv = ["--dataset", name, "--split", "train", "--oracle", "--json", str(js)]
    rc, out, err = run_cli(argv + (["--limit", str(limit)] if limit else []), capsys)
    assert rc == 0, err
    report = json.loads(js.read_text())
    n = limit or 900
    assert report["num_examples"] == n and report["split"] == "train" and report["estimator"] == "oracle"
    assert f"{name} train split ({n} examples" in out
    (stage,) = report["stages"]
    values = list(scores(stage))
    assert len(values) > 100
    assert all(v == 1.0 for _, v in values), [p for p, v in values if v != 1.0][:5]
    assert set(stage["pdj@0.2"]["per_joint"]) == set(report["joints"])
    assert set(stage["pcp"]["per_limb"]) == set(report["limbs"])
    assert len(stage["pdj_curve"]["fractions"]) == 51
    assert all(c == n for c in stage["pcp"]["counts"].values())


def test_full_training_half_oracle_is_one_and_fast(tmp_path, capsys, no_image_decoding):
    """The whole training half of both datasets (FLIC 3987, LSP 1000 examples; a few seconds)."""
    require_data("flic")
    require_data("lsp")
    for name, n in (("flic", 3987), ("lsp", 1000)):
        js, png = tmp_path / f"{name}.json", tmp_path / f"{name}.png"
        rc, out, err = run_cli(["--dataset", name, "--split", "trainval", "--oracle", "--json", str(js),
                                "--plot", str(png)], capsys)
        assert rc == 0, err
        assert png.read_bytes()[:4] == b"\x89PNG"
        report = json.loads(js.read_text())
        assert report["num_examples"] == n
        assert all(v == 1.0 for _, v in scores(report["stages"][0]))
        table = [l for l in out.splitlines() if l.split() and l.split()[0] in report["joints"] + report["limbs"] + ["mean"]]
        assert len(table) == len(report["joints"]) + len(report["limbs"]) + 3  # + mean, mean PDJ@0.1, mean PCP
        assert all(l.split()[-1] == "1.000" for l in table)


def test_noisy_oracle_below_one_and_reproducible(tmp_path, capsys, no_image_decoding):
    require_data("lsp")
    reports = []
    for i, seed in enumerate((0, 0, 1)):
        js = tmp_path / f"{i}.json"
        rc, _, err = run_cli(["--dataset", "lsp", "--split", "val", "--oracle-noise", "3", "--seed", str(seed),
                              "--json", str(js)], capsys)
        assert rc == 0, err
        reports.append(json.loads(js.read_text())["stages"][0])
    a, b, c = reports
    assert a == b  # same seed, same numbers
    assert a != c
    assert a["pdj@0.2"]["mean"] < 1.0 and a["pcp"]["mean"] < 1.0 and a["pdj@0.1"]["mean"] < a["pdj@0.2"]["mean"]
    assert a["pdj_curve"]["mean"][0] == 0.0 and a["pdj_curve"]["mean"][-1] > 0.9
    assert 0.0 < a["pdj@0.1"]["mean"] < 1.0


def test_plot_is_a_png(tmp_path, capsys, no_image_decoding):
    require_data("flic")
    png = tmp_path / "sub" / "pdj.png"
    rc, out, err = run_cli(["--dataset", "flic", "--split", "val", "--oracle-noise", "5", "--limit", "100",
                            "--plot", str(png)], capsys)
    assert rc == 0, err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.size[0] > 400 and im.size[1] > 300
        assert np.asarray(im.convert("L")).std() > 10  # lines drawn, not blank


def test_one_line_errors(tmp_path, capsys, monkeypatch):
    require_data("flic")
    # default weights (weights/<dataset> in the repository) missing: one line naming the folder, exit 2
    from deeppose.engine import cli_args
    monkeypatch.setattr(cli_args, "WEIGHTS_ROOT", tmp_path / "weights")
    rc, out, err = run_cli(["--dataset", "flic", "--split", "val"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "weights/flic is missing" in err
    rc, out, err = run_cli(["--dataset", "flic", "--split", "val", "--model", "lsp"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "weights/lsp is missing" in err
    rc, out, err = run_cli(["--dataset", "flic", "--split", "val", "--weights", str(tmp_path / "nope")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "nope" in err
    # test split: images held out -> the DatasetError line
    rc, out, err = run_cli(["--dataset", "lsp", "--split", "test", "--oracle"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "absent" in err
    rc, out, err = run_cli(["--dataset", "flic", "--split", "train", "--oracle", "--data", str(tmp_path)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "examples.mat" in err
    rc, out, err = run_cli(["--dataset", "flic", "--oracle", "--weights", str(tmp_path)], capsys)
    assert rc == 2 and err.count("\n") == 1
    # an output that cannot be written: one error line before the run, not after it (issue 12)
    (tmp_path / "file").write_text("")
    for opt in ("--json", "--plot"):
        rc, out, err = run_cli(["--dataset", "lsp", "--split", "val", "--oracle", opt, str(tmp_path / "file" / "x.png")],
                               capsys)
        assert rc == 2 and err.count("\n") == 1 and "cannot write" in err and "is a file, not a folder" in err, err
        assert "PCP@0.5" not in out
    if Path("/proc/self").is_dir():
        rc, out, err = run_cli(["--dataset", "lsp", "--split", "val", "--oracle", "--plot", "/proc/pdj.png"], capsys)
        assert rc == 2 and err.count("\n") == 1 and "cannot write --plot image /proc/pdj.png" in err, err
        assert "PCP@0.5" not in out


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the machine's cores are shared), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_stage_flic(tmp_path_factory):
    return make_random_model(tmp_path_factory.mktemp("eval_model"), stages=2, skeleton_name="flic", seed=3)


@pytest.fixture
def stand_in_b0(monkeypatch):
    """tools.data.person_boxes.example_b0 stand-in: the full image as b0, NaN for example 1."""
    calls = []

    def example_b0(dataset, scaler, missed="joints", min_confidence=None):
        calls.append((len(dataset.examples), scaler, missed, min_confidence))
        boxes = np.array([[(w - 1) / 2, (h - 1) / 2, w, h] for w, h in (e.image_size for e in dataset.examples)],
                         dtype=np.float64)
        sources = ["frame"] * len(boxes)
        boxes[1] = np.nan
        sources[1] = "none"
        return boxes, sources

    monkeypatch.setitem(sys.modules, "deeppose.tools.data.person_boxes", types.SimpleNamespace(example_b0=example_b0))
    return calls


def test_cascade_path_scores_every_stage(two_stage_flic, stand_in_b0, one_thread, tmp_path, capsys):
    """FLIC train's first 17 examples (15 and 16 share a frame): the CLI's numbers equal the
    metrics of the estimator's poses, which equal those of one example at a time; the example
    without b0 is scored as missed."""
    require_data("flic")
    from deeppose.engine.backends import load_cascade
    from deeppose.tools.data.datasets import load_dataset, load_image
    from deeppose.tools.eval.metrics import pcp, pdj

    js = tmp_path / "cascade.json"
    rc, out, err = run_cli(["--dataset", "flic", "--split", "train", "--weights", str(two_stage_flic),
                            "--limit", "17", "--json", str(js)], capsys)
    assert rc == 0, err
    report = json.loads(js.read_text())
    scaler = json.loads((two_stage_flic / "manifest.json").read_text())["scaler"]
    # example_b0 got the limited split, the model's scaler, and no ground-truth b0 for missed faces
    assert stand_in_b0 == [(17, scaler, "frame", 0.3)]
    assert [s["stage"] for s in report["stages"]] == ["stage 1", "stage 2"]
    assert report["b0_sources"] == {"frame": 16, "none": 1} and report["estimator"] == "cascade"
    assert "stage 1" in out and "stage 2" in out and "flic train split (17 examples, first 17 only)" in out

    ds = load_dataset("flic", None, "train")
    ds.examples = ds.examples[:17]
    assert ds.examples[15].image_path == ds.examples[16].image_path
    cascade, info = load_cascade(two_stage_flic)
    gt = ds.poses()
    # the command's estimator runs examples 15 and 16 together (one decoded frame, P = 2):
    # same poses as one example at a time
    b0 = sys.modules["deeppose.tools.data.person_boxes"].example_b0(ds, info.scaler)[0]
    poses, seconds = evaluate.cascade_poses(ds, cascade, b0, progress=False)
    for i in (0, 2, 15, 16):
        alone = cascade.run(load_image(ds.examples[i].image_path), b0[i:i + 1]).stage_poses[:, 0]
        np.testing.assert_allclose(poses[:, i], alone, atol=1e-3)
    assert np.isnan(poses[:, 1]).all() and np.isfinite(np.delete(poses, 1, axis=1)).all()
    assert (seconds > 0).all()
    expected = poses
    for s in range(2):
        got = report["stages"][s]
        d = pdj(expected[s], gt, ds.skeleton, [0.1, 0.2])
        np.testing.assert_allclose(list(got["pdj@0.2"]["per_joint"].values()), d.at(0.2))
        np.testing.assert_allclose(got["pdj@0.1"]["mean"], d.mean_at(0.1))
        p = pcp(expected[s], gt, ds.skeleton)
        np.testing.assert_allclose(list(got["pcp"]["per_limb"].values()), p.per_limb)
        assert max(v for _, v in scores(got)) <= 16 / 17  # example 1 (no b0) is never right
    assert len(report["stage_ms_per_example"]) == 2


def test_cascade_option_errors(two_stage_flic, stand_in_b0, tmp_path, capsys):
    require_data("lsp")
    rc, _, err = run_cli(["--dataset", "lsp", "--split", "val", "--weights", str(two_stage_flic)], capsys)
    assert rc == 2 and "flic" in err and err.count("\n") == 1
    rc, _, err = run_cli(["--dataset", "flic", "--split", "val", "--weights", str(two_stage_flic), "--stages", "3"],
                         capsys)
    assert rc == 2 and "2 stages" in err
    assert stand_in_b0 == []  # both refused before any detection


def test_cascade_on_lsp_with_the_real_b0(one_thread, tmp_path, capsys):
    """tools.data.person_boxes.example_b0 as shipped: LSP's b0 is the full image (no face detection)."""
    require_data("lsp")
    model = make_random_model(tmp_path / "lsp_model", stages=2, skeleton_name="lsp", seed=1)
    js = tmp_path / "lsp.json"
    rc, out, err = run_cli(["--dataset", "lsp", "--split", "val", "--weights", str(model), "--stages", "1",
                            "--limit", "5", "--json", str(js)], capsys)
    assert rc == 0, err
    report = json.loads(js.read_text())
    assert report["b0_sources"] == {"frame": 5} and [s["stage"] for s in report["stages"]] == ["stage 1"]
    assert "lsp val split (5 examples, first 5 only)" in out and "b0 from frame 5" in out
    assert all(0.0 <= v <= 1.0 for _, v in scores(report["stages"][0]) if v is not None)


def test_write_manifest_records_val_metrics(tmp_path, capsys):
    """--write-manifest stores per-stage PDJ/PCP in the manifest; refused on partial runs."""
    from deeppose.tools.data.datasets import load_dataset
    from deeppose.tools.eval.evaluate import evaluate_poses, write_manifest_metrics

    require_data("flic")
    model = make_random_model(tmp_path / "m", stages=2)
    rc, out, err = run_cli(["--dataset", "flic", "--split", "val", "--weights", str(model), "--limit", "5",
                            "--write-manifest"], capsys)
    assert rc == 2 and "--write-manifest" in err + out
    ds = load_dataset("flic", None, "val")
    gt = ds.poses()
    noisy = gt + np.random.default_rng(0).normal(0, 5, gt.shape)
    report = {"split": "val", "num_examples": len(gt), "b0_sources": {"face": 1}, "backend": "torch",
              "stages": evaluate_poses(np.stack([noisy, gt]), gt, ds.skeleton, ["stage 1", "stage 2"])}
    write_manifest_metrics(model, report, [])
    m = json.loads((model / "manifest.json").read_text())
    assert m["format"] == "deeppose-model/1" and m["val_protocol"]["examples"] == len(gt)
    assert m["val_metrics"]["stage2"]["pdj@0.2"]["mean"] == 1.0 and m["val_metrics"]["stage2"]["pcp"]["mean"] == 1.0
    assert 0 < m["val_metrics"]["stage1"]["pdj@0.1"]["l_wrist"] < 1
    assert "int8" not in m
    # measured with stage 2's int8 copy: the int8 record, the float metrics left as they were
    from types import SimpleNamespace

    from deeppose.engine.backends.onnxruntime_backend import int8_record
    from deeppose.engine.model import read_manifest

    regs = [SimpleNamespace(int8=False, metadata={"checkpoint_sha256": "a"}),   # Regressor stand-ins
            SimpleNamespace(int8=True, metadata={"checkpoint_sha256": "b", "calibration_sha256": "c"})]
    write_manifest_metrics(model, report, regs)   # stage 2 as exact as float's: the default
    m2 = json.loads((model / "manifest.json").read_text())
    assert m2["val_metrics"] == m["val_metrics"] and m2["val_protocol"] == m["val_protocol"]
    rec = m2["int8"]
    assert rec["stages"] == [2] and "--int8 --int8-stages 2" in rec["val_protocol"]["command"]
    assert rec["val_protocol"]["checkpoint_sha256"] == ["a", "b"] and rec["val_protocol"]["calibration_sha256"] == [None, "c"]
    assert int8_record(read_manifest(model).manifest)[0] == (2,)
    far = gt + np.random.default_rng(1).normal(0, 60, gt.shape)
    report["stages"] = evaluate_poses(np.stack([noisy, far]), gt, ds.skeleton, ["stage 1", "stage 2"])
    write_manifest_metrics(model, report, regs)
    assert json.loads((model / "manifest.json").read_text())["int8"]["val_metrics"]["stage2"]["pdj@0.2"]["mean"] < 0.9
    assert int8_record(read_manifest(model).manifest)[0] == ()   # far below float: not the default


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_turned_points_land_on_the_pixels_they_marked(degrees):
    from deeppose.engine.detection.search import turn_points
    from deeppose.tools.data.datasets import turn_image

    image = np.zeros((5, 8, 3), np.uint8)
    points = np.array([[1.0, 0.0], [7.0, 4.0], [3.0, 2.0]])
    for v, (x, y) in enumerate(points.astype(int), start=1):
        image[y, x] = v
    turned = turn_image(image, degrees)
    moved = turn_points(points, degrees // 90, 8, 5).astype(int)
    assert [turned[y, x, 0] for x, y in moved] == [1, 2, 3]
    assert np.isnan(turn_points(np.array([[np.nan, np.nan]]), degrees // 90, 8, 5)).all()


def test_evaluate_on_turned_images_takes_the_full_image_as_b0(tmp_path):
    require_data("lsp", "joints.mat")
    import main

    out = tmp_path / "r.json"
    assert main.main(["evaluate", "--dataset", "lsp", "--turn", "90", "--limit", "3", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["turn"] == 90 and report["b0_sources"] == {"frame": 3}
    assert main.main(["evaluate", "--dataset", "flic", "--turn", "180", "--b0", "face", "--limit", "3"]) == 2


def test_body_val_is_the_trainers_protocol(one_thread, tmp_path, capsys):
    """--dataset body: FLIC's and LSP's val persons in the union skeleton, each with its own b0
    (FLIC's face through the FLIC scaler, LSP's full image), as `train` validates a body model;
    --limit takes the first N of each."""
    require_data("flic")
    require_data("lsp")
    model = make_random_model(tmp_path / "body_model", stages=2, skeleton_name="body", seed=2)
    js = tmp_path / "body.json"
    rc, out, err = run_cli(["--dataset", "body", "--weights", str(model), "--limit", "3", "--json", str(js)], capsys)
    assert rc == 0, err
    report = json.loads(js.read_text())
    assert report["num_examples"] == 6 and report["b0_sources"]["lsp:frame"] == 3
    assert sum(n for s, n in report["b0_sources"].items() if s.startswith("flic:")) == 3
    assert "body val split (6 examples, first 3 of each dataset only)" in out
    counts = report["stages"][-1]["pdj_counts"]   # each dataset's own joints: FLIC has no legs, LSP no eyes
    assert counts["l_ankle"] == 3 and counts["l_eye"] == 3 and counts["l_wrist"] == 6
    for extra in (["--turn", "90"], ["--b0", "frame"], ["--data", str(tmp_path)]):
        rc, out, err = run_cli(["--dataset", "body", "--weights", str(model), *extra], capsys)
        assert rc == 2 and err.count("\n") == 1 and "--dataset body takes" in err, err
