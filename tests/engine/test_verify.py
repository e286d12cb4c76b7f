"""The check of every estimate (engine/tracking/verify.py): PoseVerifier on synthetic poses, no
model and no image. A pose is a person when the face its eyes and nose imply lies on the
reference face (near it, about its size) and its shoulders are below that face and apart."""
from __future__ import annotations

import numpy as np
import pytest

from deeppose.engine.detection.persons import DEFAULT_JOINTS_FACE, joints_face
from deeppose.engine.skeletons import BODY, FLIC, LSP
from deeppose.engine.tracking.verify import PoseVerifier, VerifyParams, on_bodies, verify_poses

FACE = np.array([200.0, 100.0, 40.0, 40.0])   # (cx, cy, w, h), pixels: s = 40


def upright(face: np.ndarray = FACE, skeleton=FLIC, shoulders_below: float = 1.2, shoulder_half: float = 1.0) -> np.ndarray:
    """A pose (k, 2) of an upright person facing the camera whose eyes and nose imply ``face``
    (cx, cy, s, s) under the default joints_face model; shoulders ``shoulders_below`` face sizes
    below the face centre and ``2 * shoulder_half`` apart."""
    cx, cy, s = face[0], face[1], face[2]
    e = s / 2 / np.hypot(1.0, DEFAULT_JOINTS_FACE["nose_weight"] * 0.5)   # eyes e apart, nose e/2 below them
    eyes_y = cy - DEFAULT_JOINTS_FACE["offset_y"] * s - e / 6
    j = {"l_eye": (cx + e / 2, eyes_y), "r_eye": (cx - e / 2, eyes_y), "nose": (cx, eyes_y + e / 2),
         "head_top": (cx, cy - s), "neck": (cx, cy + 0.8 * s),
         "l_shoulder": (cx + shoulder_half * s, cy + shoulders_below * s),
         "r_shoulder": (cx - shoulder_half * s, cy + shoulders_below * s),
         "l_elbow": (cx + 1.3 * s, cy + 2.4 * s), "r_elbow": (cx - 1.3 * s, cy + 2.4 * s),
         "l_wrist": (cx + 1.2 * s, cy + 3.5 * s), "r_wrist": (cx - 1.2 * s, cy + 3.5 * s),
         "l_hip": (cx + 0.7 * s, cy + 4.0 * s), "r_hip": (cx - 0.7 * s, cy + 4.0 * s),
         "l_knee": (cx + 0.7 * s, cy + 6.0 * s), "r_knee": (cx - 0.7 * s, cy + 6.0 * s),
         "l_ankle": (cx + 0.7 * s, cy + 8.0 * s), "r_ankle": (cx - 0.7 * s, cy + 8.0 * s)}
    return np.array([j[n] for n in skeleton.joints], dtype=np.float64)


def moved_face(pose: np.ndarray, dx: float, dy: float = 0.0, skeleton=FLIC) -> np.ndarray:
    """The pose with its eyes and nose moved by (dx, dy) pixels."""
    out = pose.copy()
    out[[skeleton.index(n) for n in ("l_eye", "r_eye", "nose")]] += (dx, dy)
    return out


def turned(pose: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    """The pose turned by ``angle`` radians about ``centre`` (clockwise on screen for angle > 0,
    y down: the crop_boxes convention)."""
    c, s = np.cos(angle), np.sin(angle)
    d = pose - centre
    return centre + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1)


@pytest.fixture
def verifier() -> PoseVerifier:
    return PoseVerifier(None, FLIC)


def test_the_synthetic_pose_implies_its_face():
    np.testing.assert_allclose(joints_face(upright(), FLIC), FACE, atol=1e-9)
    np.testing.assert_allclose(PoseVerifier(None, FLIC).implied_faces(upright()[None])[0], FACE, atol=1e-9)


def test_a_person_on_his_face_verifies_and_each_failed_check_fails(verifier):
    pose = upright()
    shrug = upright(shoulders_below=0.0)                            # shoulders level with the face
    narrow = upright(shoulder_half=0.2)                             # shoulders 0.4 s apart
    poses = np.stack([pose, moved_face(pose, 30.0), shrug, narrow, pose, pose])
    bigger = np.concatenate([FACE[:2], FACE[2:] * 2.5])             # reference 2.5x the implied face
    smaller = np.concatenate([FACE[:2], FACE[2:] / 2.5])            # ... and 1/2.5 of it
    faces = np.stack([FACE, FACE, FACE, FACE, bigger, smaller])
    assert verifier.check(poses, faces).tolist() == [True, False, False, False, False, False]


def test_the_limits_are_the_params_in_face_sizes():
    prm = VerifyParams()
    s = FACE[2]
    v = PoseVerifier(prm, FLIC)
    inside = moved_face(upright(), (prm.max_shift - 0.02) * s)
    outside = moved_face(upright(), (prm.max_shift + 0.02) * s)
    assert v.check(np.stack([inside, outside]), np.stack([FACE, FACE])).tolist() == [True, False]
    low = upright(shoulders_below=prm.min_shoulder_drop - 0.02)
    high = upright(shoulders_below=prm.min_shoulder_drop + 0.02)
    assert v.check(np.stack([low, high]), np.stack([FACE, FACE])).tolist() == [False, True]
    apart = upright(shoulder_half=(prm.min_shoulder_width + 0.02) / 2)
    close = upright(shoulder_half=(prm.min_shoulder_width - 0.02) / 2)
    assert v.check(np.stack([apart, close]), np.stack([FACE, FACE])).tolist() == [True, False]


def test_params_are_settable_and_loosened_limits_pass():
    v = PoseVerifier(None, FLIC)
    far = moved_face(upright(), 30.0)[None]                         # 0.75 s from the face
    assert not v.check(far, FACE[None])[0]
    v.params = VerifyParams(max_shift=1.0)
    assert v.check(far, FACE[None])[0]


def test_a_reference_face_from_the_previous_pose_is_held_to_the_pose_limits(verifier):
    grown = upright(np.array([200.0, 100.0, 56.0, 56.0]))           # 1.4x the reference
    moved = upright(FACE + [18.0, 0.0, 0.0, 0.0])                   # 0.45 s away
    poses, faces = np.stack([grown, moved, upright()]), np.stack([FACE, FACE, FACE])
    assert verifier.check(poses, faces).tolist() == [True, True, True]
    assert verifier.check(poses, faces, from_pose=np.ones(3, bool)).tolist() == [False, False, True]
    assert verifier.check(poses, faces, from_pose=np.array([True, False, False])).tolist() == [False, True, True]


def test_a_lying_person_verifies_along_his_face_axis(verifier):
    for angle in (np.pi / 2, -np.pi / 2, np.pi, np.radians(120)):
        lying = turned(upright(), FACE[:2], angle)
        assert not verifier.check(lying[None], FACE[None])[0], angle
        assert verifier.check(lying[None], FACE[None], angles=np.array([angle]))[0], angle
    assert verifier.check(upright()[None], FACE[None], angles=np.array([np.nan]))[0]   # NaN: upright


def test_missing_joints_fail_and_nothing_to_check_passes(verifier):
    no_eye = upright()
    no_eye[FLIC.index("l_eye")] = np.nan
    no_shoulder = upright()
    no_shoulder[FLIC.index("r_shoulder")] = np.nan
    poses = np.stack([upright(), no_eye, no_shoulder])
    assert verifier.check(poses, np.stack([FACE] * 3)).tolist() == [True, False, False]
    # no pose implies a face (all eyes missing): nothing to check
    assert verifier.check(no_eye[None], FACE[None]).tolist() == [True]
    # a skeleton without face joints (LSP) implies no face: every pose passes
    assert PoseVerifier(None, LSP).check(upright(skeleton=LSP)[None], FACE[None]).tolist() == [True]
    # no persons
    assert verifier.check(np.zeros((0, len(FLIC.joints), 2)), np.zeros((0, 4))).shape == (0,)


def test_other_skeletons_with_face_joints_are_checked():
    v = PoseVerifier(None, BODY)
    pose = upright(skeleton=BODY)
    poses = np.stack([pose, moved_face(pose, 30.0, skeleton=BODY)])
    assert v.check(poses, np.stack([FACE, FACE])).tolist() == [True, False]


def test_implied_faces_given_or_computed_with_the_joints_face_params():
    pose = upright()[None]
    # a joints_face model that puts the face 0.6 s lower: the same pose now misses the face
    low = {**DEFAULT_JOINTS_FACE, "offset_y": DEFAULT_JOINTS_FACE["offset_y"] + 0.6}
    assert PoseVerifier(None, FLIC).check(pose, FACE[None])[0]
    assert not PoseVerifier(None, FLIC, low).check(pose, FACE[None])[0]
    implied = PoseVerifier(None, FLIC, low).implied_faces(pose)
    assert not PoseVerifier(None, FLIC).check(pose, FACE[None], implied=implied)[0]


def test_verify_poses_is_the_verifier_in_one_call():
    rng = np.random.default_rng(0)
    base = upright()
    poses = base + rng.normal(0, 8, size=(40,) + base.shape)
    faces = FACE + rng.normal(0, 4, size=(40, 4))
    angles = rng.normal(0, 0.3, size=40)
    from_pose = rng.random(40) < 0.5
    prm = VerifyParams(max_shift=0.4)
    got = PoseVerifier(prm, FLIC).check(poses, faces, angles, from_pose)
    assert 0 < got.sum() < 40   # the noise makes some pass and some fail
    np.testing.assert_array_equal(got, verify_poses(poses, faces, FLIC, None, angles, prm, from_pose))


def test_on_bodies_needs_the_limbs():
    pose = upright()
    wrist = pose[FLIC.index("l_wrist")]
    assert on_bodies(wrist[None], pose[None], np.array([40.0]), FLIC).tolist() == [True]
    assert on_bodies(wrist[None] + 500, pose[None], np.array([40.0]), FLIC).tolist() == [False]
    missing = pose.copy()
    missing[FLIC.index("l_hip")] = np.nan   # a body without all its joints holds nothing
    assert on_bodies(wrist[None], missing[None], np.array([40.0]), FLIC).tolist() == [False]
