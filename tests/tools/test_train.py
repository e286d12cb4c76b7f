"""Training smoke tests on a handful of real FLIC images: the loss falls, checkpoints resume."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deeppose.tools.data.datasets import load_dataset
from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.losses import masked_l2
from deeppose.tools.train.sampling import SampleMaker, displacement_stats
from deeppose.tools.train.splits import TrainingData
from support import WEIGHTS_FLIC, require_data


@pytest.fixture(scope="module")
def small_flic():
    require_data("flic", "examples.mat")
    from deeppose.tools.data.person_boxes import example_b0

    ds = load_dataset("flic", None, "train")
    ds.examples = ds.examples[:12]
    scaler = json.loads((WEIGHTS_FLIC / "scaler.json").read_text())
    b0, sources = example_b0(ds, scaler)
    return TrainingData(ds, b0, sources)


def test_stage1_samples_put_targets_where_the_joints_are(small_flic):
    """With augmentation off, the target of joint i is N(y_i; b0), mirrored when flipped."""
    cfg = TrainConfig(batch_size=4, shift=0, scale=0, rotate_deg=0, color=0)
    maker = SampleMaker(small_flic, cfg, np.random.default_rng(0))
    batch = maker.stage1(np.arange(4))
    x, target, mask = batch.crops, batch.target, batch.mask
    assert x.shape == (4, 220, 220, 3) and x.dtype == torch.uint8 and target.shape == (4, 11, 2)
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
    batch = maker.refine(pairs, stats)
    target, mask = batch.target, batch.mask
    assert mask.sum() == 6 and (mask.sum(1) == 1).all()
    # targets are the displacement in box units: bounded by the box jitter (a few diam / sigma)
    assert np.abs(target.numpy()[mask.numpy()]).max() < 2.0


def test_a_few_steps_lower_the_loss(small_flic):
    torch.manual_seed(0)
    from deeppose.engine.network import build_network

    cfg = TrainConfig(batch_size=12)
    maker = SampleMaker(small_flic, cfg, np.random.default_rng(0))
    batch = maker.stage1(np.arange(12))
    x, target, mask = batch.network_input(), batch.target, batch.mask
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


def test_batch_network_input_is_the_run_time_normalization_with_colour_jitter(small_flic):
    """The crops travel as uint8; on the device they get exactly to_network_input, then gain and bias."""
    from deeppose.engine.geometry import to_network_input

    batch = SampleMaker(small_flic, TrainConfig(color=0.25), np.random.default_rng(3)).stage1(np.arange(5))
    expect = to_network_input(batch.crops.numpy()) * batch.gain.numpy()[:, None, None, None] \
        + batch.bias.numpy()[:, None, None, None]
    np.testing.assert_allclose(batch.network_input().numpy(), expect, rtol=1e-6, atol=1e-5)
    assert not np.allclose(batch.gain.numpy(), 1.0)


def test_stage_batches_are_the_same_with_worker_processes_and_differ_per_step(small_flic):
    """A batch depends on (seed, stage, step) only: worker processes make the very batches the
    training process would, so --workers and --resume do not change a run."""
    from deeppose.tools.train.sampling import StageBatches

    cfg = TrainConfig(batch_size=4)

    def stage1_batches(steps, **kw):   # stage 1, 3 steps per epoch; SampleMaker's own rng is replaced per batch
        return StageBatches(SampleMaker(small_flic, cfg, np.random.default_rng(7)), 1, None, None, 3, steps, **kw)

    def batches(workers):
        ds = stage1_batches(range(1, 5))
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                             **({"multiprocessing_context": "fork"} if workers else {}))
        return list(loader)
    inline, forked = batches(0), batches(2)
    assert len(inline) == len(forked) == 4
    for a, b in zip(inline, forked):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not torch.equal(inline[0].crops, inline[1].crops)
    # a resumed run (steps from 2) makes step 2's batch again; under torchrun rank 1 another one
    resumed = stage1_batches(range(2, 5))[0]
    assert all(torch.equal(x, y) for x, y in zip(resumed, inline[1]))
    other = stage1_batches(range(1, 5), world=2, rank=1)[1]
    assert not torch.equal(other.crops, inline[1].crops)


def _train_command(tmp_path) -> tuple[list[str], Path, Path]:
    """``train`` on 16 FLIC images (4 for val), stage 1, batch 8, one thread, into
    ``tmp_path/model`` (with the shipped face scaler) and ``tmp_path/run``: (argv, model folder,
    run folder)."""
    require_data("flic", "examples.mat")
    out, run = tmp_path / "model", tmp_path / "run"
    out.mkdir()
    shutil.copy(WEIGHTS_FLIC / "scaler.json", out / "scaler.json")
    return ["train", "--dataset", "flic", "--out", str(out), "--run-dir", str(run), "--limit", "16",
            "--val-limit", "4", "--batch-size", "8", "--stages", "1", "--threads", "1"], out, run


def test_train_cli_validates_every_n_epochs_and_after_the_last(tmp_path):
    import main

    common, _, run = _train_command(tmp_path)
    common += ["--epochs", "3"]
    assert main.main(common + ["--val-every", "2"]) == 0     # 2 steps per epoch
    ck = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck["epoch"] == 3 and ck["step"] == 6 and [h["epoch"] for h in ck["history"]] == [2, 3]
    log = (run / "train.log").read_text()
    assert "epoch 2/3" in log and "epoch 3/3" in log and "epoch 1/3" not in log
    # a --max-steps stop inside epoch 2 resumes at its step, not at the next epoch
    shutil.rmtree(run)
    assert main.main(common + ["--max-steps", "3"]) == 0
    assert torch.load(run / "stage1" / "last.pt", weights_only=False)["step"] == 3
    assert main.main(common + ["--resume"]) == 0
    ck = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck["step"] == 6 and "resumed from" in (run / "train.log").read_text()


def test_train_cli_writes_resumable_checkpoints_and_a_model(tmp_path):
    import main

    common, out, run = _train_command(tmp_path)
    assert main.main(common + ["--epochs", "1"]) == 0
    ck = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    # resume: continues at epoch 2 of 2 instead of starting over (batches made by a worker process)
    assert main.main(common + ["--epochs", "2", "--resume", "--workers", "1"]) == 0
    ck2 = torch.load(run / "stage1" / "last.pt", weights_only=False)
    assert ck2["epoch"] == 2 and [h["epoch"] for h in ck2["history"]] == [1, 2]
    assert "resumed from" in (run / "train.log").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == [1]
    assert manifest["scaler"]["scale_x"] > 0 and "stage1" in manifest["val_metrics"]
    # stage 2 builds on the written stage 1, here on 96-pixel joint crops (--refine-input-size)
    # and refining the arms and the nose only (--refine-joints), the eyes following the nose
    # (--refine-follow; one that pairs a refined joint is refused)
    arms = ["l_elbow", "l_wrist", "r_elbow", "r_wrist", "nose"]
    stage2 = common + ["--stages", "2", "--from-stage", "2", "--refine-epochs", "1", "--max-steps", "2",
                       "--refine-input-size", "96", "--refine-joints", ",".join(arms)]
    assert main.main(stage2 + ["--refine-follow", "l_eye=nose,l_wrist=nose"]) == 2
    assert main.main(stage2 + ["--refine-follow", "l_eye=nose,r_eye=nose"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == [1, 2]
    assert "input_size" not in manifest["stages"][0] and manifest["stages"][1]["input_size"] == 96
    assert "joints" not in manifest["stages"][0] and manifest["stages"][1]["joints"] == arms
    assert manifest["stages"][1]["follow"] == {"l_eye": "nose", "r_eye": "nose"}
    assert len(manifest["stages"][1]["displacement_prior"]["mean"]) == 11
    from deeppose.engine.backends import load_cascade
    cascade, info = load_cascade(out)
    assert cascade.num_stages == 2 and info.stage_input_sizes == [220, 96] == cascade.input_sizes
    assert info.stage_joints == [None, [1, 2, 4, 5, 10]] and cascade.stage_joints[1].tolist() == [1, 2, 4, 5, 10]
    assert cascade.stage_follow == [None, {8: 10, 9: 10}]
    # the val metrics and their protocol come from this run, PCP included
    assert manifest["val_protocol"]["command"] == "main.py train" and manifest["val_protocol"]["examples"] == 4
    assert set(manifest["val_metrics"]) == {"stage1", "stage2"} and "mean" in manifest["val_metrics"]["stage2"]["pcp"]
    # train exported both stages to ONNX: the folder runs on ONNX Runtime as written
    assert [s.get("onnx") for s in manifest["stages"]] == ["stage1.onnx", "stage2.onnx"]
    onnx_cascade, _ = load_cascade(out, backend="onnxruntime")
    crops = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    from deeppose.engine.model import load_stage_module
    torch_net = load_stage_module(out / "stage2.pt", 11)
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(crops)).numpy()
    np.testing.assert_allclose(onnx_cascade.regressors[1].regress(crops), expected, atol=1e-3)
    image = np.full((300, 400, 3), 128, np.uint8)
    result = onnx_cascade.run(image, np.array([[200.0, 150.0, 160.0, 200.0]]))
    assert result.stage_poses.shape == (2, 1, 11, 2) and np.isfinite(result.poses).all()
    others = [i for i in range(11) if i not in (1, 2, 4, 5, 8, 9, 10)]   # not refined: stage 1's position
    np.testing.assert_array_equal(result.stage_poses[1][:, others], result.stage_poses[0][:, others])
    moved = result.stage_poses[1] - result.stage_poses[0]   # the eyes move with the nose
    np.testing.assert_allclose(moved[:, [8, 9]], moved[:, [10, 10]])


def test_train_without_scaler_says_how_to_fit_it(tmp_path, capsys):
    import main

    rc = main.main(["train", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--limit", "4"])
    assert rc == 2
    assert "fit-scaler" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--stages", "0"], "--stages: must be >= 1"), (["--stages", "-1"], "--stages: must be >= 1"),
    (["--stages", "1,2,3"], "--stages: must be a whole number"), (["--stages", "x"], "--stages: must be a whole number"),
    (["--from-stage", "3", "--stages", "2"], "--from-stage 3 is after the last stage"),
    (["--threads", "-3"], "--threads: must be >= 1"),
    (["--rotate", "200"], "--rotate must be within 0..180"), (["--scale", "-0.1"], "--scale within 0..1"),
    (["--shift", "2"], "--shift and --scale within 0..1"),
    (["--refine-input-size", "40"], "--refine-input-size: must be >= 60"),
    (["--refine-joints", "l_wrist,l_knee"], "--refine-joints must name distinct flic joints"),
    (["--refine-joints", "l_wrist,l_wrist"], "--refine-joints must name distinct flic joints"),
    (["--repeat", "lsp=0"], "--repeat takes NAME=N"), (["--repeat", "coco=2"], "--repeat takes NAME=N"),
    (["--repeat", "flic=2", "--repeat", "flic=3"], "--repeat takes NAME=N"),
    (["--repeat", "lsp=3"], "this run has no lsp persons")])
def test_train_rejects_bad_stages_in_one_line(tmp_path, capsys, argv, message):
    """``--stages N`` is the number of cascade stages, as in every command (issue 12)."""
    import main

    assert main.main(["train", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "manifest.json").exists()


def test_repeat_brings_one_dataset_s_persons_n_times_an_epoch(small_flic):
    """--repeat lsp=3: each LSP person of a body or --extra-data run comes three times an epoch, in
    stage 1 and in the joint pairs of stages >= 2; the others once."""
    from deeppose.tools.train.sampling import epoch_items

    mixed = TrainingData.__new__(TrainingData)  # the same persons; half of them said to be LSP's
    mixed.__dict__.update(small_flic.__dict__,
                          sources=["lsp:frame" if i % 2 else s for i, s in enumerate(small_flic.sources)])
    rng = np.random.default_rng(0)
    once = epoch_items(1, mixed, None, rng)
    items = epoch_items(1, mixed, None, rng, {"lsp": 3})
    counts = np.bincount(items, minlength=len(mixed))
    assert sorted(once) == list(range(len(mixed)))
    assert (counts[1::2] == 3).all() and (counts[0::2] == 1).all()
    pairs = epoch_items(2, mixed, [0, 1], rng, {"lsp": 3})
    per_person = np.bincount(pairs[:, 0], minlength=len(mixed))
    base = np.bincount(epoch_items(2, mixed, [0, 1], rng)[:, 0], minlength=len(mixed))
    assert (per_person == base * np.where(np.arange(len(mixed)) % 2, 3, 1)).all()
    assert epoch_items(1, mixed, None, rng, {"flic": 2}).size == len(mixed) + (len(mixed) + 1) // 2


def test_lsp_persons_join_flic_training_with_the_union_of_joints():
    """train --extra-data lsp: LSP persons relabelled into FLIC's joints (eyes and nose NaN, out of
    the loss), b0 from the FLIC scaler applied to their detected face, or to the face implied by
    neck and head top; every labelled LSP arm joint is where LSP put it."""
    require_data("lsp", "joints.mat")
    from deeppose.engine.skeletons import FLIC
    from deeppose.tools.train.splits import extra_split

    scaler = json.loads((WEIGHTS_FLIC / "scaler.json").read_text())
    ds, b0, sources = extra_split("lsp", FLIC, scaler, limit=20)
    lsp = load_dataset("lsp", None, "train")
    assert ds.skeleton is FLIC and len(ds) == len(b0) == len(sources) == 20
    assert set(sources) <= {"face", "head"} and "face" in sources
    for e, orig in zip(ds.examples, lsp.examples[:20]):
        assert e.image_path == orig.image_path
        for name in ("l_wrist", "r_elbow", "l_hip"):
            np.testing.assert_array_equal(e.pose[FLIC.joints.index(name)], orig.pose[lsp.skeleton.joints.index(name)])
        assert np.isnan(e.pose[[FLIC.joints.index(n) for n in ("l_eye", "r_eye", "nose")]]).all()
    # b0 is an upper-body box around the head: it holds the shoulders of most persons
    poses = ds.poses()
    shoulders = poses[:, [FLIC.joints.index("l_shoulder"), FLIC.joints.index("r_shoulder")]]
    inside = (np.abs(shoulders - b0[:, None, :2]) <= b0[:, None, 2:] / 2).all(axis=(1, 2))
    assert inside.mean() >= 0.8
    # the masked loss ignores the NaN joints: a stage-1 batch has finite targets, eyes masked out
    data = TrainingData(ds, b0, sources)
    batch = SampleMaker(data, TrainConfig(batch_size=4), np.random.default_rng(0)).stage1(np.arange(4))
    target, mask = batch.target, batch.mask
    assert torch.isfinite(target).all() and not mask[:, 8:].any() and mask[:, :8].any()


def test_flic_persons_join_lsp_training_with_body_boxes_from_their_faces(tmp_path, capsys):
    """train --dataset lsp --extra-data flic: FLIC persons relabelled into LSP's 14 joints (legs,
    neck and head top NaN, out of the loss), b0 = their face enlarged by the full-body scaler: a
    tall box that holds the upper body and reaches below it, where the legs would be. Without
    the full-body scaler the run stops with a one-line error naming fit-scaler."""
    require_data("flic", "examples.mat")
    from deeppose.engine.skeletons import LSP
    from deeppose.tools.train.splits import extra_split
    from support import WEIGHTS_LSP

    scaler = json.loads((WEIGHTS_LSP / "scaler.json").read_text())
    ds, b0, sources = extra_split("flic", LSP, scaler, limit=20)
    flic = load_dataset("flic", None, "train")
    assert ds.skeleton is LSP and len(ds) == len(b0) == len(sources) == 20
    assert set(sources) <= {"face", "joints"} and "face" in sources
    for e, orig in zip(ds.examples, flic.examples[:20]):
        for name in ("l_wrist", "r_elbow", "l_hip", "r_shoulder"):
            np.testing.assert_array_equal(e.pose[LSP.joints.index(name)], orig.pose[flic.skeleton.joints.index(name)])
        assert np.isnan(e.pose[[LSP.joints.index(n) for n in ("l_knee", "r_ankle", "neck", "head_top")]]).all()
    poses = ds.poses()
    upper = poses[:, [LSP.joints.index(n) for n in ("l_shoulder", "r_shoulder", "l_hip", "r_hip")]]
    inside = (np.abs(upper - b0[:, None, :2]) <= b0[:, None, 2:] / 2).all(axis=(1, 2))
    assert inside.mean() >= 0.8
    assert (b0[:, 3] > 1.4 * b0[:, 2]).all()                                   # a standing body's box
    hips_y = np.nanmean(poses[:, [LSP.joints.index("l_hip"), LSP.joints.index("r_hip")], 1], axis=1)
    assert (b0[:, 1] + b0[:, 3] / 2 > hips_y + 0.5 * b0[:, 3] / 2).mean() >= 0.8  # room for the legs below the hips
    data = TrainingData(ds, b0, sources)
    batch = SampleMaker(data, TrainConfig(batch_size=4), np.random.default_rng(0)).stage1(np.arange(4))
    target, mask = batch.target, batch.mask
    legs = [LSP.joints.index(n) for n in ("r_ankle", "r_knee", "l_knee", "l_ankle", "neck", "head_top")]
    assert torch.isfinite(target).all() and not mask[:, legs].any() and mask.any()

    import main
    out = tmp_path / "lsp"
    capsys.readouterr()   # drop the face search's progress bars above (a fresh checkout has no face cache)
    rc = main.main(["train", "--dataset", "lsp", "--extra-data", "flic", "--out", str(out),
                    "--run-dir", str(tmp_path / "run"), "--limit", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "fit-scaler --dataset lsp" in err[0], err
    assert main.main(["train", "--dataset", "lsp", "--extra-data", "lsp", "--out", str(out)]) == 2
    assert "is the training dataset itself" in capsys.readouterr().err


def test_head_face_fit_and_match():
    from deeppose.engine.skeletons import LSP
    from deeppose.tools.data.person_boxes import fit_head_face, head_face, match_head_faces

    pose = np.full((LSP.k, 2), np.nan)
    pose[LSP.joints.index("neck")] = (100.0, 200.0)
    pose[LSP.joints.index("head_top")] = (100.0, 160.0)          # head length 40 px, upright
    face = head_face(pose, LSP, {"along": 0.5, "size_ratio": 0.75})
    np.testing.assert_allclose(face, [100.0, 180.0, 30.0, 30.0])
    faces = np.array([[300.0, 180.0, 30.0, 30.0], [102.0, 178.0, 28.0, 28.0], [100.0, 180.0, 200.0, 200.0]])
    assert match_head_faces(pose, LSP, faces) == 1                # near the head, head-sized
    assert match_head_faces(pose, LSP, faces[[0, 2]]) is None      # too far, too big
    fit = fit_head_face(pose[None], LSP, faces[1:2])
    assert fit["persons"] == 1 and fit["along"] == pytest.approx(0.55) and fit["size_ratio"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="no person"):
        fit_head_face(pose[None], LSP, np.full((1, 4), np.nan))


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_trains_and_writes_the_model(tmp_path):
    """`torchrun --nproc_per_node 2 main.py train` on a tiny run (gloo on CPU): both processes
    join, each takes half of the batches, process 0 fits stage 2's prior and writes the log,
    checkpoints and model folder."""
    import subprocess
    import sys

    require_data("flic", "examples.mat")
    from support import REPO

    out = tmp_path / "model"
    out.mkdir()
    shutil.copy(WEIGHTS_FLIC / "scaler.json", out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "main.py"), "train", "--dataset", "flic", "--out", str(out), "--run-dir", str(tmp_path / "run"),
           "--stages", "2", "--epochs", "1", "--refine-epochs", "1", "--limit", "16", "--val-limit", "4",
           "--batch-size", "4", "--threads", "1", "--loss", "smooth_l1"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "2 process(es)" in log and "loss smooth_l1" in log
    assert log.count("stage 1 epoch 1/1") == 1          # one process logs
    ck = torch.load(tmp_path / "run" / "stage1" / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and ck["train_config"]["loss"] == "smooth_l1"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [st["stage"] for st in manifest["stages"]] == [1, 2] and manifest["training"]["config"]["loss"] == "smooth_l1"
    # stage 2's displacement prior is fitted once (process 0) and shared with the other process
    assert log.count("fitted stage 1 displacement distribution") == 1 and "stage 2 epoch 1/1" in log


def test_losses_agree_on_known_errors():
    from deeppose.tools.train.losses import masked_loss

    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[0.3, -0.4, 1.0, 1.0]])
    mask = torch.tensor([[True, False]])               # the second joint is unlabelled
    assert masked_loss("l2", pred, target, mask).item() == pytest.approx(0.25)
    assert masked_loss("l1", pred, target, mask).item() == pytest.approx(0.7)
    assert masked_loss("smooth_l1", pred, target, mask).item() == pytest.approx(0.3 - 0.025 + 0.4 - 0.025)
    with pytest.raises(ValueError, match="unknown loss"):
        masked_loss("l3", pred, target, mask)
def test_train_help_names_every_default(capsys):
    """Every train option's help text says its default (issue 12)."""
    import argparse

    import main
    parser = main.build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 20
    missing = [a.option_strings[0] for a in options if "default" not in (a.help or "")]
    assert not missing, missing
    with pytest.raises(SystemExit):
        main.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--from-stage S" in text and "examples:" in text


def test_init_from_another_skeleton_takes_the_features_only(tmp_path):
    """--init: a FLIC stage starts an LSP one with every layer but the output layer; a checkpoint
    of another preset is refused in one line."""
    from deeppose.engine.model import ModelError, read_manifest
    from deeppose.engine.network import build_network
    from deeppose.tools.train.checkpoints import start_from
    from support import make_random_model

    flic = read_manifest(make_random_model(tmp_path / "flic", stages=1, skeleton_name="flic", seed=1)).stage_files[0]
    same = build_network(11)
    assert start_from(same, flic) == "every layer"
    lsp = build_network(14)
    fresh_out = lsp.head[-1].weight.detach().clone()
    assert "output layer starts afresh" in start_from(lsp, flic)
    src = torch.load(flic, weights_only=True)["state_dict"]
    torch.testing.assert_close(lsp.features[0].weight, src["features.0.weight"].float())
    torch.testing.assert_close(lsp.head[-1].weight, fresh_out)                # 28 outputs, not FLIC's 22
    with pytest.raises(ModelError, match="not psi with preset 'paper'"):
        start_from(build_network(11, "paper"), flic)


def test_a_220_stage_starts_a_smaller_input_stage_with_its_features_and_a_resampled_f_layer(tmp_path):
    """--refine-input-size: a 96-pixel stage starts from a 220-pixel one. The convolutions carry
    over unchanged; the first F layer is resampled from 6x6 to 2x2 cells so that a uniform
    feature map gives the same pre-activation as before; the later F layers carry over."""
    from deeppose.engine.model import read_manifest
    from deeppose.engine.network import build_network
    from deeppose.tools.train.checkpoints import start_from
    from support import make_random_model

    ckpt = read_manifest(make_random_model(tmp_path / "m", stages=1, skeleton_name="flic", seed=2)).stage_files[0]
    src = {k: v.float() for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()}
    small = build_network(11, "compact", 96)
    assert "resampled from 6x6 to 2x2" in start_from(small, ckpt)
    torch.testing.assert_close(small.features[0].weight, src["features.0.weight"])
    torch.testing.assert_close(small.head[-1].weight, src["head.7.weight"])
    uniform = torch.rand(128, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        big_out = torch.nn.functional.linear(uniform.expand(128, 6, 6).reshape(1, -1), src["head.1.weight"])
        small_out = small.head[1](uniform.expand(128, 2, 2).reshape(1, -1))
    torch.testing.assert_close(small_out, big_out + small.head[1].bias, rtol=1e-4, atol=1e-4)


def test_a_psi_v2_stage_starts_one_of_a_larger_input_with_a_resampled_f_layer():
    """--init across input sides for psi v2 (a 160-pixel MobileNetV2 stage 1 starting a 224-pixel
    one): the backbone, reduction and output layers carry over; the first F layer, over the
    reduced 128-channel map, is resampled from 5x5 to 7x7 cells so that a uniform map gives the
    same pre-activation."""
    from deeppose.engine.network import build_network
    from deeppose.tools.train.checkpoints import transfer_weights

    torch.manual_seed(0)
    src_net, big = build_network(17, "mobilenet_v2", 160), build_network(17, "mobilenet_v2", 224)
    src = src_net.state_dict()
    assert "resampled from 5x5 to 7x7" in transfer_weights(big, src, "stage 1")
    torch.testing.assert_close(big.backbone.state_dict()["features.0.0.weight"], src["backbone.features.0.0.weight"])
    torch.testing.assert_close(big.head[-1].weight, src["head.4.weight"])
    uniform = torch.rand(128, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        small_out = torch.nn.functional.linear(uniform.expand(128, 5, 5).reshape(1, -1), src["head.2.weight"])
        big_out = torch.nn.functional.linear(uniform.expand(128, 7, 7).reshape(1, -1), big.head[2].weight)
    torch.testing.assert_close(big_out, small_out, rtol=1e-4, atol=1e-4)


def test_lsp_manifest_records_the_run_time_scaler_but_trains_on_the_image(tmp_path):
    """LSP trains with the whole image as b0 (no scaler for training), and its manifest records
    the full-body scaler of ``--out``/scaler.json (fit-scaler --dataset lsp) for the video command
    and the app; without that file the manifest's scaler stays null."""
    import json

    from deeppose.tools.train.config import TrainConfig
    from deeppose.tools.train.splits import run_time_scaler, training_scaler

    cfg = TrainConfig(dataset="lsp", out=tmp_path)
    assert training_scaler(cfg) is None and run_time_scaler(cfg) is None
    fitted = {"offset_x": 0.05, "offset_y": 4.23, "scale_x": 7.33, "scale_y": 13.4, "fit": {"dataset": "lsp"}}
    (tmp_path / "scaler.json").write_text(json.dumps(fitted))
    assert training_scaler(cfg) is None and run_time_scaler(cfg) == fitted
