"""Box comparisons shared by the face search and the tracker: intersection over union, overlap
(intersection over the smaller box) and greedy non-maximum suppression.

Boxes follow engine.geometry: (cx, cy, w, h) in pixels, x right, y down, (0, 0) the centre of
the top-left pixel.
"""
from __future__ import annotations

import numpy as np


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection areas (N, M) of boxes a (N, 4) and b (M, 4), and their areas (N, 1), (1, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    a0, a1 = a[:, None, 0:2] - a[:, None, 2:4] / 2, a[:, None, 0:2] + a[:, None, 2:4] / 2
    b0, b1 = b[None, :, 0:2] - b[None, :, 2:4] / 2, b[None, :, 0:2] + b[None, :, 2:4] / 2
    wh = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
    return wh[..., 0] * wh[..., 1], a[:, None, 2] * a[:, None, 3], b[None, :, 2] * b[None, :, 3]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Args:
        a: (N, 4) boxes (cx, cy, w, h) in pixels.
        b: (M, 4) boxes (cx, cy, w, h) in pixels.
    Returns:
        (N, M) IoU in [0, 1]; 0 for degenerate (empty or non-finite) boxes.
    """
    inter, area_a, area_b = _intersections(a, b)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, for every box of ``a`` with every box of ``b``.

    Args:
        a: (N, 4), b: (M, 4) boxes (cx, cy, w, h) in pixels.
    Returns:
        (N, M) in [0, 1]: 1 when one box lies inside the other; 0 for degenerate boxes.
    """
    inter, area_a, area_b = _intersections(a, b)
    small = np.minimum(area_a, area_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(small > 0, inter / small, 0.0)
    return np.nan_to_num(out, nan=0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3,
        overlap_threshold: float | None = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) boxes (cx, cy, w, h), pixels.
        scores: (N,) scores.
        iou_threshold: a box whose IoU with a kept one is above this is suppressed.
        overlap_threshold: ... as is one that lies this much inside a kept one or holds it
            (intersection over the smaller box, :func:`box_overlap`); None: IoU only. Merges
            the nested boxes BlazeFace gives one face at two scales.
    Returns:
        Indices of the kept boxes, highest score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    same = box_iou(boxes, boxes) > iou_threshold
    if overlap_threshold is not None:
        same |= box_overlap(boxes, boxes) > overlap_threshold
    keep: list[int] = []
    for i in order:
        if not any(same[i, j] for j in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)
