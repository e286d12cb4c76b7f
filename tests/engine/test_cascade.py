"""The cascade with hand-made regressors whose answers are known (Eqs. 2, 6, 7)."""
import numpy as np
import pytest

from deeppose.engine.backends import load_cascade
from deeppose.engine.cascade import Cascade
from deeppose.engine.geometry import INPUT_SIZE, diam, joint_boxes, normalize
from deeppose.engine.model import ModelError, read_manifest
from deeppose.engine.skeletons import FLIC

K = FLIC.k


class Fixed:
    """Stage-1 regressor answering a fixed normalized pose for every crop."""

    def __init__(self, u):
        self.u = np.asarray(u, np.float32).reshape(1, 2 * K)
        self.batches = []

    def regress(self, crops):
        assert crops.shape[1:] == (3, INPUT_SIZE, INPUT_SIZE) and crops.dtype == np.float32
        self.batches.append(len(crops))
        return np.repeat(self.u, len(crops), axis=0)


class Oracle:
    """Refinement regressor that knows the true pose: answers N(y_i; b) for each crop's joint i."""

    def __init__(self, truth, sigma, min_size=1.0):
        self.truth, self.sigma, self.min_size, self.prev, self.batches = truth, sigma, min_size, None, []

    def regress(self, crops):
        self.batches.append(len(crops))
        p = self.prev.shape[0]
        boxes = joint_boxes(self.prev, self.sigma, FLIC, self.min_size).reshape(p * K, 4)
        u = normalize(np.repeat(self.truth, K, axis=0), boxes[:, None])  # all k joints in every box
        return u.reshape(p * K, 2 * K).astype(np.float32)


def _truth(p=2, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(100, 300, (p, K, 2))
    return base


def test_stage1_maps_normalized_output_through_b0():
    u = np.linspace(-0.4, 0.4, 2 * K).reshape(K, 2)
    b0 = np.array([[200.0, 150.0, 100.0, 80.0], [50.0, 60.0, 40.0, 40.0]])
    reg = Fixed(u)
    res = Cascade([reg], FLIC, sigma=1.0).run(np.zeros((300, 400, 3), np.uint8), b0)
    assert res.stage_poses.shape == (1, 2, K, 2)
    np.testing.assert_allclose(res.poses[0], u * [100, 80] + [200, 150], atol=1e-5)
    np.testing.assert_allclose(res.poses[1], u * [40, 40] + [50, 60], atol=1e-5)
    assert reg.batches == [2]  # both persons in one batch


def test_refinement_stage_adds_displacement_in_joint_boxes_and_batches_all_crops():
    """A stage-2 regressor answering half of N(y_i; b_i) moves every joint halfway to the truth."""
    truth = _truth()
    image = np.zeros((400, 400, 3), np.uint8)
    b0 = np.array([[200.0, 200.0, 300.0, 300.0]] * 2)
    s1 = Fixed(np.zeros((K, 2)))  # stage 1 puts every joint at the b0 centre

    class HalfWay(Oracle):
        def regress(self, crops):
            self.prev = np.full((2, K, 2), 200.0)
            return super().regress(crops) / 2

    # an all-at-centre pose has diam 0: the joint boxes fall back to 5% of the b0 side
    s2 = HalfWay(truth, sigma=1.0, min_size=0.05 * 300)
    res = Cascade([s1, s2], FLIC, sigma=1.0).run(image, b0)
    np.testing.assert_allclose(res.stage_poses[0], 200.0)
    assert s2.batches == [2 * K]  # all persons' joints in ONE batch
    np.testing.assert_allclose(res.stage_boxes[0][..., :2], 200.0)
    np.testing.assert_allclose(res.stage_boxes[0][..., 2:], 15.0)
    np.testing.assert_allclose(res.stage_poses[1], 200.0 + (truth - 200.0) / 2, atol=1e-3)


def test_refinement_with_exact_oracle_recovers_truth():
    truth = _truth(p=3, seed=1)
    image = np.zeros((400, 400, 3), np.uint8)
    b0 = np.column_stack([truth.mean(1), np.full((3, 2), 300.0)])
    u1 = normalize(truth, b0[:, None]) + 0.05  # stage 1 is off by 5% of b0 on each joint

    class S1:
        def regress(self, crops):
            return u1.reshape(3, 2 * K).astype(np.float32)

    state = {}

    class S2(Oracle):
        def regress(self, crops):
            self.prev = state["prev"]
            return super().regress(crops)

    s2 = S2(truth, 1.0, min_size=0.05 * 300)  # the cascade's floor: 5% of the b0 side
    cascade = Cascade([S1(), s2], FLIC, sigma=1.0)
    # run stage 1 alone to learn what stage 2 will see
    state["prev"] = cascade.run(image, b0, stages=1).poses
    res = cascade.run(image, b0)
    np.testing.assert_allclose(res.stage_poses[0], truth + 0.05 * 300, atol=1e-3)
    np.testing.assert_allclose(res.poses, truth, atol=1e-3)  # Eq. 6 lands on the truth
    # Eq. 7: stage 2's boxes are centred on stage 1's joints with side sigma * diam(stage 1 pose),
    # floored at 5% of the b0 side
    np.testing.assert_allclose(res.stage_boxes[0][..., :2], res.stage_poses[0])
    side = np.maximum(diam(res.stage_poses[0], FLIC), 15.0)
    np.testing.assert_allclose(res.stage_boxes[0][..., 2], np.repeat(side[:, None], K, 1))


def test_no_person_and_bad_stage_count():
    cascade = Cascade([Fixed(np.zeros((K, 2)))], FLIC, 1.0)
    res = cascade.run(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 4)))
    assert res.poses.shape == (0, K, 2)
    with pytest.raises(ValueError, match="stages must be in 1..1"):
        cascade.run(np.zeros((10, 10, 3), np.uint8), np.zeros((1, 4)), stages=2)


def test_wrong_regressor_shape_is_reported():
    class Bad:
        def regress(self, crops):
            return np.zeros((len(crops), 3), np.float32)

    with pytest.raises(ValueError, match="stage 1 regressor returned shape"):
        Cascade([Bad()], FLIC, 1.0).run(np.zeros((50, 50, 3), np.uint8), np.array([[25, 25, 50, 50.0]]))


def test_load_cascade_from_model_folder(random_model_dir):
    cascade, info = load_cascade(random_model_dir)
    assert cascade.num_stages == 3 and info.skeleton.name == "flic"
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    res = cascade.run(image, np.array([[160.0, 120.0, 200.0, 220.0]]))
    assert res.stage_poses.shape == (3, 1, K, 2) and np.isfinite(res.stage_poses).all()
    assert len(res.stage_seconds) == 3


def test_model_folder_errors(tmp_path, random_model_dir):
    with pytest.raises(ModelError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        read_manifest(bad)
    import json
    good = json.loads((random_model_dir / "manifest.json").read_text())
    for key, value, message in [("stages", [], "'stages' must be"), ("skeleton", {"name": "coco"}, "unknown skeleton"),
                                ("sigma", None, "'sigma' must be"), ("scaler", [1, 2], "'scaler' must be")]:
        (bad / "manifest.json").write_text(json.dumps({**good, key: value}))
        with pytest.raises(ModelError, match=message):
            read_manifest(bad)
    # corrupt checkpoint
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(random_model_dir, broken)
    (broken / "stage2.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="is not a valid deeppose checkpoint"):
        load_cascade(broken)
    (broken / "stage2.pt").unlink()
    with pytest.raises(ModelError, match="stage2.pt is missing"):
        load_cascade(broken)


class DotReader:
    """Regressor that finds the bright dot of each crop (intensity centroid) and answers it for every joint,
    plus a per-joint offset (``offsets`` (K, 2), normalized units) and a constant x bias."""

    def __init__(self, offsets, bias_x=0.0):
        self.offsets, self.bias_x, self.batches = np.asarray(offsets, np.float64), bias_x, []

    def regress(self, crops):
        self.batches.append(len(crops))
        b, _, s, _ = crops.shape
        w = np.clip(crops[:, 0].astype(np.float64) - crops[:, 0].min(), 0, None)   # (B, S, S)
        grid = np.arange(s, dtype=np.float64)
        with np.errstate(invalid="ignore"):   # a crop without the dot: NaN, no dot to answer
            dot = np.stack([(w.sum(1) * grid).sum(1), (w.sum(2) * grid).sum(1)], axis=1) / w.sum((1, 2))[:, None]
        u = (dot - (s - 1) / 2) / s                                  # (B, 2), Eq. 1 in crop units
        out = u[:, None, :] + self.offsets[None] + [self.bias_x, 0.0]
        return out.reshape(b, 2 * K).astype(np.float32)


def _dot_image():
    image = np.zeros((300, 400, 3), np.uint8)
    image[140:143, 231:234] = 255                                     # a 3x3 dot centred at (232, 141)
    return image, np.array([[200.0, 150.0, 220.0, 220.0]])


def _symmetric_offsets():
    """Offsets that respect the mirror: joint m(j)'s offset is joint j's with x negated."""
    rng = np.random.default_rng(3)
    off = rng.uniform(-0.2, 0.2, (K, 2))
    mirror = np.asarray(FLIC.mirror)
    for j in range(K):
        if mirror[j] == j:
            off[j, 0] = 0.0
        elif mirror[j] > j:
            off[mirror[j]] = off[j] * [-1.0, 1.0]
    return off


@pytest.mark.parametrize("mode", ["first", "all"])
def test_flip_leaves_a_mirror_equivariant_regressor_unchanged(mode):
    image, b0 = _dot_image()
    off = _symmetric_offsets()
    direct = Cascade([DotReader(off)], FLIC, sigma=1.0).run(image, b0).poses
    reg = DotReader(off)
    flipped = Cascade([reg], FLIC, sigma=1.0, flip=mode).run(image, b0).poses
    assert reg.batches == [2]                                          # direct and mirrored crops in one batch
    np.testing.assert_allclose(flipped, direct, atol=1e-3)
    np.testing.assert_allclose(direct[0, 0] - off[0] * 220, [232, 141], atol=1.0)


def test_flip_cancels_a_horizontal_bias():
    image, b0 = _dot_image()
    off = _symmetric_offsets()
    exact = Cascade([DotReader(off)], FLIC, sigma=1.0).run(image, b0).poses
    biased = Cascade([DotReader(off, bias_x=0.1)], FLIC, sigma=1.0).run(image, b0).poses
    np.testing.assert_allclose(biased - exact, np.broadcast_to([22.0, 0.0], exact.shape), atol=1e-3)
    averaged = Cascade([DotReader(off, bias_x=0.1)], FLIC, sigma=1.0, flip="all").run(image, b0).poses
    np.testing.assert_allclose(averaged, exact, atol=1e-3)


def test_flip_first_mirrors_stage_1_only_and_all_mirrors_every_stage():
    image, b0 = _dot_image()
    off = _symmetric_offsets()
    for mode, expected in (("off", [1, K]), ("first", [2, K]), ("all", [2, 2 * K])):
        s1, s2 = DotReader(off), DotReader(np.zeros((K, 2)))
        Cascade([s1, s2], FLIC, sigma=1.0, flip=mode).run(image, b0)
        assert s1.batches + s2.batches == expected, mode
    with pytest.raises(ValueError, match="flip must be one of"):
        Cascade([s1], FLIC, sigma=1.0, flip="both")


def test_rotated_b0_on_a_rotated_image_gives_the_rotated_pose(random_model_dir):
    """Rotated b0 (issue 10, part 3): the cascade on an image turned by 90 degrees, with b0
    turned by the same angle, crops exactly what it crops upright (every stage), so its poses
    are the upright poses mapped through the rotation. (The upright run takes a turn of 1e-12 rad:
    the affine crops, exact, not the resize crops of axis-aligned boxes, within half a pixel.)"""
    cascade, _ = load_cascade(random_model_dir, "torch")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    b0 = np.array([[150.0, 120.0, 140.0, 120.0], [220.0, 100.0, 90.0, 100.0]])
    upright = cascade.run(image, b0, angles=np.full(2, 1e-12))
    h = image.shape[0]
    turned = np.ascontiguousarray(np.rot90(image, k=-1))      # clockwise on screen: (x, y) -> (h-1-y, x)

    def turn(xy):
        return np.stack([h - 1 - xy[..., 1], xy[..., 0]], axis=-1)

    b0_turned = np.concatenate([turn(b0[:, :2]), b0[:, 2:]], axis=1)
    res = cascade.run(turned, b0_turned, angles=np.full(2, np.pi / 2))
    for s in range(cascade.num_stages):
        np.testing.assert_allclose(res.stage_poses[s], turn(upright.stage_poses[s]), atol=0.05)
    # Without the angle the crop is of a lying person: a different answer.
    flat = cascade.run(turned, b0_turned)
    assert np.abs(flat.stage_poses[0] - turn(upright.stage_poses[0])).max() > 1.0


def test_each_stage_gets_crops_of_its_own_input_size():
    """A model whose refinement stages take smaller crops (ModelInfo.stage_input_sizes): stage 1
    sees 220-pixel b0 crops, stages >= 2 their own side; a size list of the wrong length is refused."""
    seen = []

    class Sized:
        def __init__(self, answer):
            self.answer = answer

        def regress(self, crops):
            seen.append(crops.shape[1:])
            return np.repeat(self.answer, len(crops), axis=0)

    u = np.zeros((1, 2 * K), np.float32)
    u[0, 0::2] = np.linspace(-0.3, 0.3, K)
    cascade = Cascade([Sized(u), Sized(np.zeros((1, 2 * K), np.float32)), Sized(np.zeros((1, 2 * K), np.float32))],
                      FLIC, sigma=1.0, input_size=[220, 96, 64])
    res = cascade.run(np.zeros((300, 400, 3), np.uint8), np.array([[200.0, 150.0, 100.0, 80.0]]))
    assert seen == [(3, 220, 220), (3, 96, 96), (3, 64, 64)]
    np.testing.assert_allclose(res.poses, res.stage_poses[0])   # zero displacement keeps stage 1's pose
    with pytest.raises(ValueError, match="2 input sizes for 3 stages"):
        Cascade([Sized(u)] * 3, FLIC, sigma=1.0, input_size=[220, 96])


def test_a_stage_refines_only_its_joints_and_crops_only_theirs():
    """stage_joints: stage 2 refines joints 1 and 2 only. It crops 2 boxes per person (one
    batch for all persons), moves those joints by its answer, and the other joints keep stage
    1's position; their stage-2 boxes are NaN (not cropped)."""
    u = np.zeros((1, 2 * K), np.float32)
    u[0, 0::2] = np.linspace(-0.3, 0.3, K)
    shift = np.full((1, 2 * K), 0.25, np.float32)       # every crop answers (+0.25, +0.25) box units
    first, second = Fixed(u), Fixed(shift)
    second.regress = lambda crops: (second.batches.append(len(crops)), np.repeat(shift, len(crops), axis=0))[1]
    b0 = np.array([[200.0, 150.0, 100.0, 80.0], [100.0, 100.0, 60.0, 60.0]])
    cascade = Cascade([first, second], FLIC, sigma=1.0, stage_joints=[None, [1, 2]])
    res = cascade.run(np.zeros((300, 400, 3), np.uint8), b0)
    assert second.batches == [4]                          # 2 persons x 2 joints
    s1, s2 = res.stage_poses
    others = [i for i in range(K) if i not in (1, 2)]
    np.testing.assert_array_equal(s2[:, others], s1[:, others])
    side = res.stage_boxes[0][:, [1, 2], 2]               # (P, 2) box sides
    np.testing.assert_allclose(s2[:, [1, 2]], s1[:, [1, 2]] + 0.25 * side[..., None])
    assert np.isnan(res.stage_boxes[0][:, others]).all() and np.isfinite(res.stage_boxes[0][:, [1, 2]]).all()
    for bad in ([[0], [1]], [None, [K]], [None, [1, 1]], [None, []]):
        with pytest.raises(ValueError):
            Cascade([first, second], FLIC, sigma=1.0, stage_joints=bad)


def test_followers_take_their_leaders_displacement_without_a_crop():
    """stage_follow: stage 2 refines joints 1 and 10 (the nose); the eyes (8, 9) follow the
    nose: no crop of theirs (NaN boxes), and they move by exactly the nose's stage-2
    displacement while joint 1 moves by its own and the rest keep stage 1's position. A
    follower the stage refines or outside 0..k-1, a leader it does not refine, a map on stage
    1, or one that is not a mapping is refused."""
    u = np.zeros((1, 2 * K), np.float32)
    u[0, 0::2] = np.linspace(-0.3, 0.3, K)
    out = np.zeros((1, 2 * K), np.float32)
    out[0, 2:4] = (0.1, -0.2)       # joint 1's own answer
    out[0, 20:22] = (-0.25, 0.15)   # the nose's own answer
    out[0, 16:20] = 0.4             # the eyes' outputs: unused, they are not cropped
    first, second = Fixed(u), Fixed(out)
    b0 = np.array([[200.0, 150.0, 100.0, 80.0], [100.0, 100.0, 60.0, 60.0]])
    cascade = Cascade([first, second], FLIC, sigma=1.0, stage_joints=[None, [1, 10]],
                      stage_follow=[None, {8: 10, 9: 10}])
    res = cascade.run(np.zeros((300, 400, 3), np.uint8), b0)
    assert second.batches == [4]                                   # 2 persons x (joint 1, nose)
    s1, s2 = res.stage_poses
    side = res.stage_boxes[0][:, [1, 10], 2]                       # (P, 2)
    np.testing.assert_allclose(s2[:, 1], s1[:, 1] + np.array([0.1, -0.2]) * side[:, :1])
    nose_move = np.array([-0.25, 0.15]) * side[:, 1:]
    np.testing.assert_allclose(s2[:, 10], s1[:, 10] + nose_move)
    np.testing.assert_allclose(s2[:, [8, 9]], s1[:, [8, 9]] + nose_move[:, None])
    rest = [i for i in range(K) if i not in (1, 8, 9, 10)]
    np.testing.assert_array_equal(s2[:, rest], s1[:, rest])
    assert np.isnan(res.stage_boxes[0][:, [8, 9]]).all()
    for joints, follow in (([None, [1, 10]], [None, {1: 10}]), ([None, [1, 10]], [None, {8: 2}]),
                           ([None, [1, 10]], [{8: 10}, None]), ([None, None], [None, {8: 10}]),
                           ([None, [1, 10]], [None]), ([None, [1, 10]], [None, {-1: 10}]),
                           ([None, [1, 10]], [None, {K: 10}]), ([None, [1, 10]], [None, [(8, 10)]])):
        with pytest.raises(ValueError):
            Cascade([first, second], FLIC, sigma=1.0, stage_joints=joints, stage_follow=follow)
