"""Stick figures on frames (engine/drawing.py): limb colours, joint dots, widths, boxes."""
from __future__ import annotations

import numpy as np
import pytest

from deeppose.engine.drawing import BOX_COLORS, FACE_COLOR, draw_box, draw_pose, draw_poses, joint_colors, line_width
from deeppose.engine.pipeline import FrameResult, PersonResult
from deeppose.engine.skeletons import FLIC, LSP


def _flic_pose(cx=320.0, cy=240.0, s=60.0) -> np.ndarray:
    """An upright FLIC pose (k, 2) in pixels around (cx, cy), arms hanging down and out."""
    j = {n: i for i, n in enumerate(FLIC.joints)}
    pose = np.zeros((FLIC.k, 2))
    pose[j["l_shoulder"]] = (cx + s, cy - s)     # person-centric left = image right
    pose[j["r_shoulder"]] = (cx - s, cy - s)
    pose[j["l_elbow"]] = (cx + 1.6 * s, cy)
    pose[j["r_elbow"]] = (cx - 1.6 * s, cy)
    pose[j["l_wrist"]] = (cx + 2.0 * s, cy + s)
    pose[j["r_wrist"]] = (cx - 2.0 * s, cy + s)
    pose[j["l_hip"]] = (cx + 0.7 * s, cy + 1.5 * s)
    pose[j["r_hip"]] = (cx - 0.7 * s, cy + 1.5 * s)
    pose[j["l_eye"]] = (cx + 0.2 * s, cy - 2.2 * s)
    pose[j["r_eye"]] = (cx - 0.2 * s, cy - 2.2 * s)
    pose[j["nose"]] = (cx, cy - 2.0 * s)
    return pose


def _result(pose, b0=None, face=None, source="face") -> FrameResult:
    b0 = np.array([320.0, 240.0, 300.0, 360.0]) if b0 is None else b0
    person = PersonResult(1, b0, face, source, pose[None], pose)
    return FrameResult(0, 0.0, [person], 0.0, [0.0], 0.0, "torch", (640, 480))


def _near(frame, xy, color, radius=1, tol=40) -> bool:
    """Some pixel within ``radius`` of xy has (close to) ``color``."""
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = frame[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(color)).max(axis=1) <= tol).any())


def test_line_width_scales_with_frame():
    assert line_width((360, 540, 3)) == 2
    assert line_width((720, 1280, 3)) == 3
    assert line_width((1080, 1920, 3)) in (4, 5)
    assert line_width((2160, 3840, 3)) == 9
    assert line_width((100, 100, 3)) == 2  # never thinner than 2 px


def test_each_limb_drawn_in_its_fixed_colour():
    pose = _flic_pose()
    frame = np.zeros((480, 640, 3), np.uint8)
    out = draw_poses(frame, _result(pose), FLIC)
    assert out is frame
    for (a, b), color in zip(FLIC.edges, FLIC.edge_colors):
        mid = (pose[a] + pose[b]) / 2
        assert _near(frame, mid, color), f"edge {FLIC.joints[a]}-{FLIC.joints[b]} not drawn in {color}"
    # Left and right upper arms have different colours (told apart at a glance).
    assert len(set(FLIC.edge_colors[:4])) == 4
    # Nothing drawn far from the figure.
    assert frame[:40].max() == 0 and frame[:, :60].max() == 0


def test_joints_are_dots_bigger_than_the_lines():
    pose = _flic_pose()
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_pose(frame, pose, FLIC)
    th = line_width(frame.shape)
    colors = joint_colors(FLIC)
    for j, xy in enumerate(pose):
        assert _near(frame, xy, colors[j], radius=0), FLIC.joints[j]
        # The dot reaches past the line's half width on both sides, across any limb.
        x, y = int(round(xy[0])), int(round(xy[1]))
        assert frame[y - th - 1: y + th + 2, x - th - 1: x + th + 2].any(axis=2).mean() > 0.6


def test_non_finite_joints_are_skipped():
    pose = _flic_pose()
    lw = FLIC.index("l_wrist")
    pose[lw] = np.nan
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_poses(frame, _result(pose), FLIC)  # no error
    le = FLIC.index("l_elbow")
    # The lower left arm (elbow -> missing wrist) is not drawn beyond the elbow's dot.
    past_elbow = pose[le] + np.array([40.0, 40.0])
    assert not frame[int(past_elbow[1]) - 3:int(past_elbow[1]) + 4, int(past_elbow[0]) - 3:int(past_elbow[0]) + 4].any()


def test_lsp_skeleton_draws_legs():
    rng = np.random.default_rng(1)
    pose = rng.uniform(100, 380, size=(LSP.k, 2))
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_pose(frame, pose, LSP)
    for (a, b), color in zip(LSP.edges, LSP.edge_colors):
        mid = (pose[a] + pose[b]) / 2
        assert frame[int(round(mid[1])) - 2:int(round(mid[1])) + 3, int(round(mid[0])) - 2:int(round(mid[0])) + 3].any()


@pytest.mark.parametrize("source", ["face", "held", "frame"])
def test_boxes_drawn_only_when_asked(source):
    pose = _flic_pose()
    b0 = np.array([320.0, 240.0, 500.0, 400.0])
    face = np.array([320.0, 110.0, 40.0, 40.0]) if source == "face" else None
    plain = np.zeros((480, 640, 3), np.uint8)
    draw_poses(plain, _result(pose, b0, face, source), FLIC)
    boxed = np.zeros((480, 640, 3), np.uint8)
    draw_poses(boxed, _result(pose, b0, face, source), FLIC, draw_boxes=True)
    left_edge = boxed[60:420, 68:73]   # b0's left side is x = 70
    assert not plain[60:420, 68:73].any()
    lit = left_edge.any(axis=(1, 2))
    assert lit.mean() > (0.3 if source == "held" else 0.9)
    if source == "held":
        assert lit.mean() < 0.8, "a held box is dashed"
    color = np.array(BOX_COLORS[source])
    assert (np.abs(left_edge.reshape(-1, 3).astype(int) - color).max(axis=1) < 40).any()
    if face is not None:
        assert _near(boxed, (300, 110), FACE_COLOR, radius=2)


def test_draw_box_ignores_non_finite_boxes():
    frame = np.zeros((50, 50, 3), np.uint8)
    draw_box(frame, np.array([np.nan, 10, 5, 5]), (255, 255, 255))
    assert not frame.any()


def _lsp_pose(cx=320.0, top=60.0, s=40.0) -> np.ndarray:
    """A standing LSP pose (k, 2) in pixels, head top at (cx, top), feet about 9 s below it."""
    j = {n: i for i, n in enumerate(LSP.joints)}
    pose = np.zeros((LSP.k, 2))
    pose[j["head_top"]] = (cx, top)
    pose[j["neck"]] = (cx, top + 1.5 * s)
    pose[j["l_shoulder"]], pose[j["r_shoulder"]] = (cx + s, top + 2 * s), (cx - s, top + 2 * s)
    pose[j["l_elbow"]], pose[j["r_elbow"]] = (cx + 1.8 * s, top + 3.5 * s), (cx - 1.8 * s, top + 3.5 * s)
    pose[j["l_wrist"]], pose[j["r_wrist"]] = (cx + 2.4 * s, top + 5 * s), (cx - 2.4 * s, top + 5 * s)
    pose[j["l_hip"]], pose[j["r_hip"]] = (cx + 0.6 * s, top + 5 * s), (cx - 0.6 * s, top + 5 * s)
    pose[j["l_knee"]], pose[j["r_knee"]] = (cx + 0.9 * s, top + 7 * s), (cx - 0.9 * s, top + 7 * s)
    pose[j["l_ankle"]], pose[j["r_ankle"]] = (cx + 1.1 * s, top + 9 * s), (cx - 1.1 * s, top + 9 * s)
    return pose


def test_flic_look_unchanged():
    """The upper-body figure keeps its colours (BGR): arms yellow/orange (left) and sky blue/violet
    (right), a white torso, a red face."""
    arms = [(0, 215, 255), (0, 140, 255), (255, 191, 0), (255, 0, 128)]
    assert list(FLIC.edge_colors) == arms + [(255, 255, 255)] * 4 + [(60, 60, 255)] * 2


def test_lsp_each_leg_in_its_own_colour():
    """The 14-joint figure: every limb drawn in its colour; the left leg's colours differ from the
    right leg's, and both legs' from every arm's."""
    colors = {(LSP.joints[a], LSP.joints[b]): c for (a, b), c in zip(LSP.edges, LSP.edge_colors)}
    left_leg = {colors[("l_hip", "l_knee")], colors[("l_knee", "l_ankle")]}
    right_leg = {colors[("r_hip", "r_knee")], colors[("r_knee", "r_ankle")]}
    arms = {c for (a, b), c in colors.items() if "elbow" in a or "elbow" in b}
    assert len(arms) == 4 and not left_leg & right_leg and not (left_leg | right_leg) & arms
    pose = _lsp_pose()
    frame = np.zeros((480, 640, 3), np.uint8)
    draw_poses(frame, _result(pose), LSP)
    for (a, b), color in zip(LSP.edges, LSP.edge_colors):
        assert _near(frame, (pose[a] + pose[b]) / 2, color), f"edge {LSP.joints[a]}-{LSP.joints[b]} not in {color}"


def test_joints_outside_the_frame_are_not_drawn():
    """Legs that leave the frame (ankles predicted below it): the lower legs and the ankle dots
    are left out; the knees and everything above them are drawn."""
    pose = _lsp_pose(top=60.0, s=45.0)   # ankles at y = 465, knees at 375
    frame = np.zeros((420, 640, 3), np.uint8)
    draw_pose(frame, pose, LSP)
    for name in ("l_ankle", "r_ankle"):
        assert pose[LSP.index(name), 1] > frame.shape[0]
    for a, b in (("l_knee", "l_ankle"), ("r_knee", "r_ankle")):
        knee, ankle = pose[LSP.index(a)], pose[LSP.index(b)]
        below_knee = knee + 0.4 * (ankle - knee)   # in the frame, past the knee's dot
        assert below_knee[1] < frame.shape[0] - 5
        x, y = int(round(below_knee[0])), int(round(below_knee[1]))
        assert not frame[y - 2:y + 3, x - 2:x + 3].any(), f"{a}-{b} drawn although {b} is off the frame"
        assert _near(frame, knee, joint_colors(LSP)[LSP.index(a)], radius=0)
    # the same pose on a frame that holds it draws the lower legs
    tall = np.zeros((520, 640, 3), np.uint8)
    draw_pose(tall, pose, LSP)
    knee, ankle = pose[LSP.index("l_knee")], pose[LSP.index("l_ankle")]
    mid = knee + 0.4 * (ankle - knee)
    assert tall[int(round(mid[1])) - 2:int(round(mid[1])) + 3, int(round(mid[0])) - 2:int(round(mid[0])) + 3].any()


def test_unsure_joints_and_their_limbs_are_not_drawn_unless_asked():
    """psi v2 models give each joint a confidence: below min_confidence (0.2 by default) a joint
    and the limbs touching it are left out; unknown confidence (NaN, psi v1) is always drawn."""
    j = {n: i for i, n in enumerate(FLIC.joints)}
    pose = _flic_pose()
    wrist, elbow = pose[j["l_wrist"]], pose[j["l_elbow"]]
    forearm = (wrist + elbow) / 2
    conf = np.full(FLIC.k, 0.9)
    conf[j["l_wrist"]] = 0.1
    conf[j["r_wrist"]] = np.nan
    res = _result(pose)
    res.persons[0].confidence = conf
    hidden = draw_poses(np.zeros((480, 640, 3), np.uint8), res, FLIC)
    shown = draw_poses(np.zeros((480, 640, 3), np.uint8), res, FLIC, min_confidence=0.0)
    assert not hidden[int(wrist[1]), int(wrist[0])].any() and not hidden[int(forearm[1]), int(forearm[0])].any()
    assert shown[int(wrist[1]), int(wrist[0])].any() and shown[int(forearm[1]), int(forearm[0])].any()
    assert hidden[int(elbow[1]), int(elbow[0])].any()                       # the sure elbow stays
    r_wrist = pose[j["r_wrist"]]
    assert hidden[int(r_wrist[1]), int(r_wrist[0])].any()                   # NaN: drawn
