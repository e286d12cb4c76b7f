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
