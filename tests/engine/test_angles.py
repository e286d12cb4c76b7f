"""Joint angles (engine/angles.py) and their place in the keypoints records (engine/keypoints.py):
a synthetic pose against a hand computation (law of cosines), the angles each skeleton has,
unknown angles, confidence, and the JSONL / CSV round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deeppose.engine.angles import ANGLES, angle_confidence, angle_defs, joint_angles
from deeppose.engine.keypoints import KeypointsWriter, read_keypoints, read_keypoints_header
from deeppose.engine.pipeline import FrameResult, PersonResult
from deeppose.engine.skeletons import BODY, FLIC, LSP


def by_hand(a, v, b) -> float:
    """The angle at v of the triangle a, v, b in degrees, by the law of cosines."""
    va, vb, ab = math.dist(v, a), math.dist(v, b), math.dist(a, b)
    return math.degrees(math.acos((va ** 2 + vb ** 2 - ab ** 2) / (2 * va * vb)))


# A person facing the camera (their left on the image's right), 640x480 frame: left arm bent up,
# right arm hanging straight, left leg lifted at the hip and bent at the knee, right leg straight.
POSE = {
    "l_shoulder": (360.0, 150.0), "l_elbow": (420.0, 190.0), "l_wrist": (430.0, 120.0),
    "r_shoulder": (280.0, 150.0), "r_elbow": (275.0, 220.0), "r_wrist": (270.0, 290.0),
    "l_hip": (345.0, 290.0), "l_knee": (400.0, 330.0), "l_ankle": (395.0, 410.0),
    "r_hip": (295.0, 290.0), "r_knee": (297.0, 370.0), "r_ankle": (299.0, 450.0),
    "neck": (320.0, 140.0), "head_top": (320.0, 60.0),
    "l_eye": (330.0, 100.0), "r_eye": (310.0, 100.0), "nose": (320.0, 112.0),
}

HAND = {
    "l_elbow": by_hand(POSE["l_shoulder"], POSE["l_elbow"], POSE["l_wrist"]),
    "r_elbow": by_hand(POSE["r_shoulder"], POSE["r_elbow"], POSE["r_wrist"]),
    "l_shoulder": by_hand(POSE["l_hip"], POSE["l_shoulder"], POSE["l_elbow"]),
    "r_shoulder": by_hand(POSE["r_hip"], POSE["r_shoulder"], POSE["r_elbow"]),
    "l_hip": by_hand(POSE["l_shoulder"], POSE["l_hip"], POSE["l_knee"]),
    "r_hip": by_hand(POSE["r_shoulder"], POSE["r_hip"], POSE["r_knee"]),
    "l_knee": by_hand(POSE["l_hip"], POSE["l_knee"], POSE["l_ankle"]),
    "r_knee": by_hand(POSE["r_hip"], POSE["r_knee"], POSE["r_ankle"]),
}


def pose_of(skeleton) -> np.ndarray:
    return np.array([POSE[j] for j in skeleton.joints], dtype=np.float64)


def test_definitions_and_the_angles_each_skeleton_has():
    assert [(d.name, d.a, d.vertex, d.b) for d in ANGLES[:2]] == [("l_elbow", "l_shoulder", "l_elbow", "l_wrist"),
                                                                 ("r_elbow", "r_shoulder", "r_elbow", "r_wrist")]
    assert {d.name: (d.a, d.b) for d in ANGLES}["l_knee"] == ("l_hip", "l_ankle")
    assert {d.name: (d.a, d.b) for d in ANGLES}["r_shoulder"] == ("r_hip", "r_elbow")
    assert [d.name for d in angle_defs(FLIC)] == ["l_elbow", "r_elbow", "l_shoulder", "r_shoulder"]
    assert [d.name for d in angle_defs(LSP)] == [d.name for d in ANGLES] == [d.name for d in angle_defs(BODY)]


@pytest.mark.parametrize("skeleton", [FLIC, LSP, BODY], ids=lambda s: s.name)
def test_angles_match_a_hand_computation(skeleton):
    deg = joint_angles(pose_of(skeleton), skeleton)
    names = [d.name for d in angle_defs(skeleton)]
    assert deg.shape == (len(names),)
    assert deg == pytest.approx([HAND[n] for n in names], abs=1e-9)
    # sanity of the synthetic pose: a hanging straight arm and a straight leg read about 180
    assert HAND["r_elbow"] > 175 and HAND["r_knee"] > 175 and HAND["l_elbow"] < 100


def test_batched_poses_unknown_joints_and_mirror():
    pose = pose_of(LSP)
    two = np.stack([pose, pose])
    two[1, LSP.index("l_wrist")] = np.nan                   # not finite -> its elbow angle is unknown
    deg = joint_angles(two, LSP)
    names = [d.name for d in angle_defs(LSP)]
    assert deg.shape == (2, 8)
    assert np.isnan(deg[1, names.index("l_elbow")]) and np.isfinite(np.delete(deg[1], names.index("l_elbow"))).all()
    valid = np.ones(LSP.k, bool)
    valid[LSP.index("r_ankle")] = False                     # e.g. out of the frame
    assert np.isnan(joint_angles(pose, LSP, valid)[names.index("r_knee")])
    coincident = pose.copy()
    coincident[LSP.index("l_wrist")] = coincident[LSP.index("l_elbow")]
    assert np.isnan(joint_angles(coincident, LSP)[names.index("l_elbow")])
    # a mirrored image swaps left and right angles, values unchanged
    mirrored = LSP.mirror_pose(pose, 640)
    assert joint_angles(mirrored, LSP)[[names.index("r_elbow"), names.index("l_elbow")]] == pytest.approx(
        [HAND["l_elbow"], HAND["r_elbow"]])


def test_angle_confidence_is_the_least_of_its_joints():
    conf = np.linspace(0.2, 0.9, FLIC.k)
    got = angle_confidence(conf, FLIC)
    want = [min(conf[FLIC.index(d.a)], conf[FLIC.index(d.vertex)], conf[FLIC.index(d.b)]) for d in angle_defs(FLIC)]
    assert got == pytest.approx(want)
    conf[FLIC.index("l_wrist")] = np.nan
    assert np.isnan(angle_confidence(conf, FLIC)[0]) and np.isfinite(angle_confidence(conf, FLIC)[1:]).all()
    assert np.isnan(angle_confidence(None, FLIC)).all()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
@pytest.mark.parametrize("with_confidence", [False, True], ids=["psi_v1", "psi_v2"])
def test_keypoints_files_carry_angles_and_confidence(tmp_path, suffix, with_confidence):
    pose = pose_of(LSP)
    pose[LSP.index("r_ankle")] = (299.0, 500.0)     # below the 640x480 frame: the right knee angle is unknown
    conf = np.linspace(0.3, 0.95, LSP.k) if with_confidence else None
    person = PersonResult(2, np.array([320.0, 260.0, 300.0, 420.0]), None, "pose", pose[None], pose,
                          0.9, True, 0.0, conf)
    path = tmp_path / f"kp{suffix}"
    writer = KeypointsWriter(path, LSP, {"width": 640, "height": 480})
    writer.write(FrameResult(0, 0.0, [person], 0.0, [0.0], 0.0, "torch", (640, 480), 1))
    writer.close()
    if suffix == ".jsonl":
        assert read_keypoints_header(path)["angles"] == [d.name for d in ANGLES]
    rec = read_keypoints(path)[0]["persons"][0]
    angles = rec["angles"]
    assert list(angles) == [d.name for d in ANGLES]
    for name, a in angles.items():
        if name == "r_knee":
            assert a["deg"] is None
        else:
            assert a["deg"] == pytest.approx(HAND[name], abs=0.051)    # one decimal
    if with_confidence:
        want = dict(zip([d.name for d in ANGLES], angle_confidence(conf, LSP)))
        assert all(a["confidence"] == pytest.approx(want[n], abs=5e-4) for n, a in angles.items())
        assert [rec["joints"][j]["confidence"] for j in LSP.joints] == pytest.approx(conf, abs=5e-4)
    else:
        assert all(a["confidence"] is None for a in angles.values())
        assert all(j["confidence"] is None for j in rec["joints"].values())


def test_pipeline_persons_carry_the_cascades_confidence(random_model_dir):
    """PersonResult.confidence is the cascade's per-joint confidence (NaN for psi v1 models,
    null in the record); a psi v2 cascade's values (stood in for here) reach the record."""
    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.keypoints import frame_record
    from deeppose.engine.pipeline import PosePipeline

    frame = np.zeros((120, 160, 3), np.uint8)
    with PosePipeline(PipelineConfig(random_model_dir, "torch", full_frame_fallback=True, smooth=False)) as pipe:
        v1 = pipe.process(frame)
        person = v1.persons[0]
        assert person.confidence.shape == (FLIC.k,) and np.isnan(person.confidence).all()
        assert all(j["confidence"] is None for j in frame_record(v1, FLIC)["persons"][0]["joints"].values())
        run = pipe.cascade.run

        def v2_run(*args, **kwargs):
            res = run(*args, **kwargs)
            res.confidence = np.tile(np.linspace(0.5, 0.9, FLIC.k), (res.confidence.shape[0], 1))
            res.confidence[:, FLIC.index("nose")] = np.nan
            return res

        pipe.cascade.run = v2_run
        v2 = pipe.process(frame)
    joints = frame_record(v2, FLIC)["persons"][0]["joints"]
    want = np.linspace(0.5, 0.9, FLIC.k)
    assert joints["nose"]["confidence"] is None
    assert [joints[j]["confidence"] for j in FLIC.joints if j != "nose"] == pytest.approx(
        [want[i] for i, j in enumerate(FLIC.joints) if j != "nose"], abs=5e-4)
