"""Stick figures on frames: one fixed colour per limb (``Skeleton.edge_colors``, BGR), joints as
dots, line widths scaled to the frame; optionally the person box b0 and the face box.

Coordinates follow the project convention (pixels, (0, 0) the centre of the top-left pixel),
which is OpenCV's; points are drawn with sub-pixel precision (``shift`` = 4 bits).
Non-finite joints and joints predicted outside the frame (:func:`engine.geometry.joints_in_frame`)
are not drawn, nor the limbs that end at them. Everything draws in place on a uint8 BGR frame.
The figure follows the model's skeleton: FLIC's upper body, or LSP's full body, whose left and
right legs have their own colours, distinct from each other and from the arms
(``engine.skeletons``).
"""
from __future__ import annotations

import cv2
import numpy as np

from .constants import MIN_JOINT_CONFIDENCE
from .geometry import joints_in_frame

_SHIFT = 4
_ONE = 1 << _SHIFT

# Box colours (BGR) by b0 source.
BOX_COLORS = {"face": (0, 220, 0), "pose": (0, 170, 255), "held": (160, 160, 160), "frame": (255, 128, 0),
              "body": (255, 0, 200)}
FACE_COLOR = (255, 255, 0)
JOINT_OUTLINE = (0, 0, 0)


def line_width(frame_shape: tuple[int, ...]) -> int:
    """Limb line width in pixels for a frame of shape (H, W, ...): 1 per 240 px of the
    shorter side, at least 2 (3 px at 720p, 4-5 px at 1080p, 2 px at 360p)."""
    return max(2, int(round(min(frame_shape[0], frame_shape[1]) / 240.0)))


def _pt(xy) -> tuple[int, int]:
    return int(round(float(xy[0]) * _ONE)), int(round(float(xy[1]) * _ONE))


def joint_colors(skeleton) -> list[tuple[int, int, int]]:
    """Colour of each joint's dot: the colour of the first edge that ends at it (BGR)."""
    colors: list[tuple[int, int, int] | None] = [None] * skeleton.k
    edge_colors = skeleton.edge_colors or ((255, 255, 255),) * len(skeleton.edges)
    for (a, b), c in zip(skeleton.edges, edge_colors):
        for j in (b, a):
            if colors[j] is None:
                colors[j] = tuple(int(v) for v in c)
    return [c or (255, 255, 255) for c in colors]


def draw_pose(frame: np.ndarray, pose: np.ndarray, skeleton, thickness: int | None = None,
              confidence: np.ndarray | None = None, min_confidence: float = 0.0) -> np.ndarray:
    """Draw one pose vector as a stick figure.

    Args:
        frame: (H, W, 3) uint8 BGR, drawn in place.
        pose: (k, 2) joints in pixels; non-finite joints and joints outside the frame (and the
            edges touching them) are skipped.
        skeleton: :class:`engine.skeletons.Skeleton` giving edges and edge colours.
        thickness: limb width in pixels (default :func:`line_width`).
        confidence: (k,) each joint's confidence in [0, 1], or None; NaN: unknown (drawn).
        min_confidence: joints whose confidence is below this are skipped too.
    Returns:
        ``frame``.
    """
    pose = np.asarray(pose, dtype=np.float64)
    th = thickness or line_width(frame.shape)
    ok = joints_in_frame(pose, frame.shape[1], frame.shape[0])
    if confidence is not None and min_confidence > 0:
        ok &= ~(np.asarray(confidence, dtype=np.float64) < min_confidence)   # NaN compares False: drawn
    edge_colors = skeleton.edge_colors or ((255, 255, 255),) * len(skeleton.edges)
    for (a, b), c in zip(skeleton.edges, edge_colors):
        if ok[a] and ok[b]:
            cv2.line(frame, _pt(pose[a]), _pt(pose[b]), tuple(int(v) for v in c), th, cv2.LINE_AA, _SHIFT)
    radius = (th + 2) * _ONE
    for j, c in enumerate(joint_colors(skeleton)):
        if ok[j]:
            p = _pt(pose[j])
            cv2.circle(frame, p, radius, c, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(frame, p, radius, JOINT_OUTLINE, max(1, th // 3), cv2.LINE_AA, _SHIFT)
    return frame


def draw_box(frame: np.ndarray, box: np.ndarray, color, thickness: int = 2, dashed: bool = False,
             angle: float = 0.0) -> np.ndarray:
    """Draw a box (cx, cy, w, h) in pixels as a rectangle outline (dashed if asked), turned by
    ``angle`` radians about its centre (a rotated b0)."""
    box = np.asarray(box, dtype=np.float64)
    if not np.isfinite(box).all():
        return frame
    x0, y0 = box[0] - box[2] / 2, box[1] - box[3] / 2
    x1, y1 = box[0] + box[2] / 2, box[1] + box[3] / 2
    color = tuple(int(v) for v in color)
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        corners = [(box[0] + c * (x - box[0]) - s * (y - box[1]), box[1] + s * (x - box[0]) + c * (y - box[1]))
                   for x, y in corners]
        if not dashed:
            cv2.polylines(frame, [np.array([_pt(q) for q in corners[:-1]], np.int32)], True, color, thickness,
                          cv2.LINE_AA, _SHIFT)
            return frame
    if not dashed:
        cv2.rectangle(frame, _pt((x0, y0)), _pt((x1, y1)), color, thickness, cv2.LINE_AA, _SHIFT)
        return frame
    dash = max(6.0, 4.0 * thickness)
    for (ax, ay), (bx, by) in zip(corners[:-1], corners[1:]):
        length = float(np.hypot(bx - ax, by - ay))
        n = max(1, int(length // dash))
        for i in range(0, n, 2):
            t0, t1 = i / n, min(1.0, (i + 1) / n)
            cv2.line(frame, _pt((ax + (bx - ax) * t0, ay + (by - ay) * t0)),
                     _pt((ax + (bx - ax) * t1, ay + (by - ay) * t1)), color, thickness, cv2.LINE_AA, _SHIFT)
    return frame


def draw_label(frame: np.ndarray, text: str, box: np.ndarray, color, thickness: int) -> np.ndarray:
    """Write ``text`` on a filled tab of ``color`` at the top-left corner of ``box``
    (cx, cy, w, h), above the box when there is room, else just inside it."""
    scale = 0.2 * thickness
    font_th = max(1, thickness // 3)
    (tw, tht), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, font_th)
    h, w = frame.shape[:2]
    x0 = int(round(min(max(box[0] - box[2] / 2, 0), max(w - tw - 4, 0))))
    top = int(round(box[1] - box[3] / 2))
    y1 = top if top - tht - base - 4 >= 0 else max(top, 0) + tht + base + 4
    y0 = y1 - tht - base - 4
    cv2.rectangle(frame, (x0, y0), (x0 + tw + 4, y1), tuple(int(v) for v in color), -1)
    cv2.putText(frame, text, (x0 + 2, y1 - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), font_th, cv2.LINE_AA)
    return frame


def draw_poses(frame_bgr: np.ndarray, result, skeleton, draw_boxes: bool = False, draw_ids: bool | None = None,
               min_confidence: float = MIN_JOINT_CONFIDENCE) -> np.ndarray:
    """Draw every person of a :class:`engine.pipeline.FrameResult` on its frame.

    Args:
        frame_bgr: (H, W, 3) uint8 BGR, drawn in place.
        result: the frame's :class:`engine.pipeline.FrameResult` (``persons[i].pose`` (k, 2) px).
        skeleton: the model's skeleton.
        draw_boxes: also draw each person's b0 (green from a face, orange when tracked by pose,
            grey dashed when held, blue for the full frame, magenta when found by body without
            a face; turned with a rotated b0) and the face box (cyan).
        draw_ids: label each b0 with the person's track id (default: with ``draw_boxes``).
        min_confidence: joints less sure than this are not drawn (:data:`MIN_JOINT_CONFIDENCE`;
            0 draws all; only models that give a confidence, psi v2, have such joints).
    Returns:
        ``frame_bgr``.
    """
    th = line_width(frame_bgr.shape)
    box_th = max(1, th - 1)
    if draw_ids is None:
        draw_ids = draw_boxes
    for p in result.persons:
        if draw_boxes:
            draw_box(frame_bgr, p.b0, BOX_COLORS.get(p.b0_source, (0, 220, 0)), box_th, dashed=p.b0_source == "held",
                     angle=getattr(p, "angle", 0.0))
            if p.face is not None:
                draw_box(frame_bgr, p.face, FACE_COLOR, box_th)
        if draw_ids and np.isfinite(p.b0).all():
            draw_label(frame_bgr, f"#{p.track_id}", p.b0, BOX_COLORS.get(p.b0_source, (0, 220, 0)), th)
    for p in result.persons:
        draw_pose(frame_bgr, p.pose, skeleton, th, getattr(p, "confidence", None), min_confidence)
    return frame_bgr
