"""Training smoke tests on a handful of real FLIC images: the loss falls, checkpoints resume."""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import WEIGHTS_FLIC, require_data
from deeppose.tools.datasets import load_dataset
from deeppose.tools.trainer import SampleMaker, TrainConfig, TrainingData, displacement_stats, masked_l2


@pytest.fixture(scope="module")
def small_flic():
    require_data("flic", "examples.mat")
    from deeppose.tools.person_boxes import example_b0

    ds = load_dataset("flic", None, "train")
    ds.examples = ds.examples[:12]
    scaler = json.loads((WEIGHTS_FLIC / "scaler.json").read_text())
    b0, sources = example_b0(ds, scaler)
    return TrainingData(ds, b0, sources)


def test_stage1_samples_put_targets_where_the_joints_are(small_flic):
    """With augmentation off, the target of joint i is N(y_i; b0), mirrored when flipped."""
    cfg = TrainConfig(batch_size=4, shift=0, scale=0, rotate_deg=0, color=0)
    maker = SampleMaker(small_flic, cfg, np.random.default_rng(0))
    x, target, mask = maker.stage1(np.arange(4))
    assert x.shape == (4, 3, 220, 220) and target.shape == (4, 11, 2)
    for j in range(4):
        expect = (small_flic.poses[j] - small_flic.b0[j, :2]) / small_flic.b0[j, 2:]
        got = target[j].numpy()
        if not np.allclose(got, expect, atol=1e-5):  # flipped sample
            flipped = expect[list(small_flic.ds.skeleton.mirror)] * [-1, 1]
            np.testing.assert_allclose(got, flipped, atol=1e-5)
    assert mask.all()


def test_refine_samples_target_only_their_joint(small_flic):
    cfg = TrainConfig(batch_size=6, sigma=1.0)
    maker = SampleMaker(small_flic, cfg, np.random.default_rng(1))
    stats = displacement_stats(small_flic.poses + 3.0, small_flic)
    pairs = np.array([[0, 0], [1, 2], [2, 5], [3, 7], [4, 9], [5, 10]])
    x, target, mask = maker.refine(pairs, stats)
    assert mask.sum() == 6 and (mask.sum(1) == 1).all()
    # targets are the displacement in box units: bounded by the box jitter (a few diam / sigma)
    assert np.abs(target.numpy()[mask.numpy()]).max() < 2.0


def test_a_few_steps_lower_the_loss(small_flic):
    torch.manual_seed(0)
    from deeppose.engine.network import build_network

    cfg = TrainConfig(batch_size=12)
    maker = SampleMaker(small_flic, cfg, np.random.default_rng(0))
    x, target, mask = maker.stage1(np.arange(12))
    net = build_network(11, "compact")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = masked_l2(net(x), target, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_cli_writes_resumable_checkpoints_and_a_model(tmp_path):
    require_data("flic", "examples.mat")
    import main

    out, run = tmp_path / "model", tmp_path / "run"
    out.mkdir()
    shutil.copy(WEIGHTS_FLIC / "scaler.json", out / "scaler.json")
    common = ["train", "--dataset", "flic", "--out", str(out), "--run-dir", str(run), "--limit", "16",
              "--val-limit", "4", "--batch-size", "8", "--stages", "1", "--threads", "1"]
    assert main.main(common + ["--epochs", "1"]) == 0
    ck = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    # resume: continues at epoch 2 of 2 instead of starting over
    assert main.main(common + ["--epochs", "2", "--resume"]) == 0
    ck2 = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck2["epoch"] == 2 and [h["epoch"] for h in ck2["history"]] == [1, 2]
    assert "resumed from" in (run / "train.log").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == [1]
    assert manifest["scaler"]["scale_x"] > 0 and "stage1" in manifest["val_metrics"]
    # stage 2 builds on the written stage 1
    assert main.main(common + ["--stages", "2", "--refine-epochs", "1", "--max-steps", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == [1, 2]
    assert len(manifest["stages"][1]["displacement_prior"]["mean"]) == 11
    from deeppose.engine.model import load_cascade
    cascade, _ = load_cascade(out)
    assert cascade.num_stages == 2


def test_train_without_scaler_says_how_to_fit_it(tmp_path, capsys):
    import main

    rc = main.main(["train", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--limit", "4"])
    assert rc == 2
    assert "fit-scaler" in capsys.readouterr().err


@pytest.mark.parametrize("stages", ["0", "-1", "2,1", "x", ""])
def test_train_rejects_bad_stage_lists(tmp_path, capsys, stages):
    import main

    assert main.main(["train", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--stages", stages]) == 2
    assert "--stages must be" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()
