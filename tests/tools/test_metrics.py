"""PCP and PDJ (tools/eval/metrics.py): the oracle, hand-made cases with known values, NaN handling,
and a statistical check against the closed form for Gaussian noise on the real poses."""
from __future__ import annotations

import numpy as np
import pytest

from deeppose.engine.geometry import diam
from deeppose.engine.skeletons import FLIC, LSP
from deeppose.tools.data.datasets import default_data_root, load_dataset
from deeppose.tools.eval.evaluate import oracle_poses
from deeppose.tools.eval.metrics import pcp, pcp_correct, pdj, pdj_curve, pdj_distances

HAVE_DATA = (default_data_root("flic") / "examples.mat").is_file() and (default_data_root("lsp") / "joints.mat").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"shared data not found at {default_data_root('flic').parent}")


def flic_pose() -> np.ndarray:
    """A hand-made upright FLIC pose; diam = |l_shoulder - r_hip| = |(30, 40)| = 50 px,
    upper and lower arms all 40 px long."""
    j = {n: i for i, n in enumerate(FLIC.joints)}
    p = np.zeros((FLIC.k, 2))
    p[j["l_shoulder"]] = (130, 100)
    p[j["l_elbow"]] = (130, 140)
    p[j["l_wrist"]] = (130, 180)
    p[j["r_shoulder"]] = (100, 100)
    p[j["r_elbow"]] = (100, 140)
    p[j["r_wrist"]] = (100, 180)
    p[j["l_hip"]] = (130, 140)
    p[j["r_hip"]] = (100, 140)
    p[j["l_eye"]] = (120, 60)
    p[j["r_eye"]] = (110, 60)
    p[j["nose"]] = (115, 70)
    return p


def test_hand_made_pose_has_the_intended_diam():
    assert diam(flic_pose(), FLIC) == pytest.approx(50.0)


@needs_data
@pytest.mark.parametrize("name", ["flic", "lsp"])
def test_oracle_scores_one_everywhere_on_real_poses(name):
    gt = load_dataset(name, None, "trainval").poses()
    skeleton = FLIC if name == "flic" else LSP
    r = pcp(gt, gt, skeleton)
    assert r.per_limb.tolist() == [1.0] * len(skeleton.limbs) and r.mean == 1.0
    assert (r.counts == len(gt)).all()
    c = pdj_curve(gt, gt, skeleton)
    assert c.fractions.shape == (51,) and c.fractions[0] == 0.0 and c.fractions[-1] == pytest.approx(0.5)
    assert (c.per_joint == 1.0).all() and (c.mean == 1.0).all()  # even at fraction 0 (|d| <= 0)
    assert (c.counts == len(gt)).all()


@pytest.mark.parametrize("shift", [(15.0, 0.0), (0.0, -15.0), (9.0, 12.0)])
def test_pdj_one_joint_shifted_by_0_3_diam(shift):
    gt = flic_pose()[None]
    pred = gt.copy()
    e = FLIC.index("l_elbow")
    pred[0, e] += shift  # |shift| = 15 px = 0.3 * diam
    r = pdj(pred, gt, FLIC, [0.2, 0.299, 0.3, 0.4])
    others = [i for i in range(FLIC.k) if i != e]
    assert r.at(0.2)[e] == 0.0 and r.at(0.299)[e] == 0.0
    assert r.at(0.3)[e] == 1.0 and r.at(0.4)[e] == 1.0  # the boundary counts as detected ("within")
    assert (r.per_joint[:, others] == 1.0).all()
    assert r.mean_at(0.2) == pytest.approx(10 / 11)
    assert pdj_distances(pred, gt, FLIC)[0, e] == pytest.approx(0.3)


@pytest.mark.parametrize("fraction,passes", [(0.4, True), (0.49, True), (0.51, False), (0.6, False)])
def test_pcp_one_limb_end_moved(fraction, passes):
    """Moving the left elbow by fraction x 40 px (the length of both left arm limbs) decides both
    left arm limbs; the right arm stays correct."""
    gt = flic_pose()[None]
    pred = gt.copy()
    pred[0, FLIC.index("l_elbow")] += fraction * 40.0 * np.array([0.6, 0.8])
    r = pcp(pred, gt, FLIC)
    expected = {"l_upper_arm": passes, "l_lower_arm": passes, "r_upper_arm": True, "r_lower_arm": True}
    assert dict(zip(r.limbs, r.per_limb.tolist())) == {k: float(v) for k, v in expected.items()}
    assert r.mean == pytest.approx(np.mean(list(expected.values())))
    assert r.per_part() == {"upper_arm": 1.0 if passes else 0.5, "lower_arm": 1.0 if passes else 0.5}


def test_pcp_needs_both_end_points():
    gt = flic_pose()[None]
    pred = gt.copy()
    # shoulder and elbow each moved by 0.45 x 40 px: both within, upper arm correct
    pred[0, FLIC.index("l_shoulder")] += (0, -18.0)
    pred[0, FLIC.index("l_elbow")] += (18.0, 0)
    assert pcp(pred, gt, FLIC).per_limb[0] == 1.0
    # a limb predicted with the right length and direction, shifted by 0.55 of its length: both ends off
    pred = gt.copy()
    pred[0, [FLIC.index("r_shoulder"), FLIC.index("r_elbow")]] += (22.0, 0)
    assert pcp(pred, gt, FLIC).per_limb[2] == 0.0


@pytest.mark.parametrize("fraction,passes", [(0.4, True), (0.6, False)])
def test_pcp_torso_end_points_are_joint_means(fraction, passes):
    """LSP's torso runs from mid-hip to mid-shoulder; moving one hip by 2f moves mid-hip by f."""
    j = {n: i for i, n in enumerate(LSP.joints)}
    gt = np.zeros((1, LSP.k, 2))
    for name, xy in {"r_hip": (90, 200), "l_hip": (110, 200), "r_shoulder": (85, 120), "l_shoulder": (115, 120),
                     "r_knee": (90, 250), "l_knee": (110, 250), "r_ankle": (90, 300), "l_ankle": (110, 300),
                     "r_elbow": (80, 160), "l_elbow": (120, 160), "r_wrist": (80, 200), "l_wrist": (120, 200),
                     "neck": (100, 110), "head_top": (100, 80)}.items():
        gt[0, j[name]] = xy
    pred = gt.copy()
    pred[0, j["l_hip"]] += (2 * fraction * 80.0, 0)  # torso length 80 px
    r = pcp(pred, gt, LSP)
    assert r.per_limb[r.limbs.index("torso")] == float(passes)
    assert r.per_limb[r.limbs.index("r_upper_leg")] == 1.0


def test_nan_handling():
    gt = np.stack([flic_pose()] * 4)
    pred = gt.copy()
    le, lw, ls, rh = (FLIC.index(n) for n in ("l_elbow", "l_wrist", "l_shoulder", "r_hip"))
    rs, lh = FLIC.index("r_shoulder"), FLIC.index("l_hip")
    gt[0, le] = np.nan                    # unlabelled gt joint: excluded from l_elbow and two limbs
    pred[1, lw] = np.nan                  # NaN prediction: counts as wrong
    gt[2, [ls, rh]] = np.nan              # first diam pair unlabelled: the second pair is used
    gt[3, [ls, rh, rs, lh]] = np.nan      # no diam: example 3 excluded from PDJ
    r = pdj(pred, gt, FLIC, 0.2)
    assert r.counts[le] == 2              # examples 1, 2
    assert r.counts[lw] == 3 and r.at(0.2)[lw] == pytest.approx(2 / 3)
    assert r.counts[FLIC.index("nose")] == 3
    assert np.isfinite(r.per_joint).all() and np.isfinite(r.mean).all()
    # example 2's diam comes from the second pair, r_shoulder - l_hip (also 50 px)
    assert diam(gt[2], FLIC) == pytest.approx(50.0)
    c = pcp(pred, gt, FLIC)
    counts = dict(zip(c.limbs, c.counts.tolist()))
    assert counts == {"l_upper_arm": 1, "l_lower_arm": 3, "r_upper_arm": 3, "r_lower_arm": 4}
    # l_upper_arm: example 0 lacks the elbow, 2 and 3 the shoulder; r_upper_arm: 3 lacks r_shoulder
    per = dict(zip(c.limbs, c.per_limb.tolist()))
    assert per["l_lower_arm"] == pytest.approx(2 / 3)  # example 1's NaN wrist is wrong
    assert per["r_lower_arm"] == 1.0
    # a limb no example labels: NaN, left out of the mean
    gt_all = gt.copy()
    gt_all[:, le] = np.nan
    c = pcp(gt_all, gt_all, FLIC)
    assert np.isnan(c.per_limb[0]) and np.isnan(c.per_limb[1]) and c.counts[0] == 0
    assert c.mean == 1.0


def test_pcp_correct_shapes_and_errors():
    gt = np.stack([flic_pose()] * 3)
    correct, valid = pcp_correct(gt, gt, FLIC)
    assert correct.shape == valid.shape == (3, 4) and correct.all()
    assert pdj(flic_pose(), flic_pose(), FLIC).per_joint.shape == (2, 11)  # single pose, default 0.1 and 0.2
    with pytest.raises(ValueError, match="shape"):
        pcp(np.zeros((3, 14, 2)), np.zeros((3, 14, 2)), FLIC)
    with pytest.raises(ValueError, match="shape"):
        pdj(np.zeros((3, 11, 2)), np.zeros((2, 11, 2)), FLIC)
    with pytest.raises(KeyError):
        pdj(gt, gt, FLIC, [0.2]).at(0.3)


@needs_data
def test_noisy_oracle_matches_the_gaussian_closed_form():
    """Isotropic Gaussian noise of sigma px per coordinate gives a Rayleigh distance:
    P(|e| <= r) = 1 - exp(-r^2 / (2 sigma^2)). PDJ and PCP over the real LSP poses must match
    the expected value of that closed form within 4 binomial standard errors."""
    ds = load_dataset("lsp", None, "trainval")
    gt = ds.poses()
    sigma = 4.0
    pred = oracle_poses(gt, sigma, seed=1)[0]
    rayleigh = lambda r, s: 1.0 - np.exp(-(r ** 2) / (2 * s ** 2))  # noqa: E731

    c = pdj_curve(pred, gt, LSP)
    d = diam(gt, LSP)
    for f in (0.05, 0.1, 0.2, 0.3):
        p = rayleigh(f * d, sigma)                               # (N,) per example
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert np.abs(c.at(f) - p.mean()).max() <= 4 * se + 1e-9, f

    r = pcp(pred, gt, LSP)
    for li, limb in enumerate(LSP.limbs):
        a = gt[:, list(limb.a)].mean(axis=1)
        b = gt[:, list(limb.b)].mean(axis=1)
        length = np.linalg.norm(b - a, axis=1)
        # an end point averaging m joints has noise sigma / sqrt(m)
        p = rayleigh(0.5 * length, sigma / np.sqrt(len(limb.a))) * rayleigh(0.5 * length, sigma / np.sqrt(len(limb.b)))
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(r.per_limb[li] - p.mean()) <= 4 * se + 1e-9, limb.name
    assert r.mean < 0.99 and c.mean_at(0.2) < 0.99  # the noise is felt


def test_pdj_curve_is_monotone():
    rng = np.random.default_rng(0)
    gt = np.stack([flic_pose()] * 50) + rng.normal(0, 3, (50, FLIC.k, 2))
    pred = gt + rng.normal(0, 6, gt.shape)
    c = pdj_curve(pred, gt, FLIC)
    assert (np.diff(c.per_joint, axis=0) >= 0).all()
    assert c.per_joint[0].max() == 0.0 and c.mean[-1] > 0.9
    d = c.to_dict()
    assert len(d["fractions"]) == 51 and set(d["per_part"]) == {"shoulder", "elbow", "wrist", "hip", "eye", "nose"}


def test_four_limb_pcp_averages_left_and_right_of_the_papers_limbs():
    """The LSP headline figure: upper arm, lower arm, upper leg, lower leg (left and right
    averaged) and their mean; None for an upper-body model's limbs (no legs) or a missing count."""
    from deeppose.tools.eval.metrics import four_limb_pcp

    pcp = {"torso": 0.9, "head": 0.8, "l_upper_arm": 0.4, "r_upper_arm": 0.5, "l_lower_arm": 0.1,
           "r_lower_arm": 0.3, "l_upper_leg": 0.6, "r_upper_leg": 0.7, "l_lower_leg": 0.5, "r_lower_leg": 0.5}
    out = four_limb_pcp(pcp)
    assert out == pytest.approx({"upper_arm": 0.45, "lower_arm": 0.2, "upper_leg": 0.65, "lower_leg": 0.5,
                                 "mean_of_four": 0.45})
    assert four_limb_pcp({k: v for k, v in pcp.items() if "leg" not in k}) is None
    assert four_limb_pcp(dict(pcp, r_lower_leg=None)) is None
