"""Pose vectors, boxes, the box normalization N(.; b) and its inverse (Eq. 1), diam(y),
joint boxes (Eq. 7) and the image crop N(x; b) to the network input.

Conventions (shared by the whole project):
- A pose vector is an array of shape (..., k, 2) in pixels: x right, y down, (0, 0) the
  centre of the top-left pixel. Unlabelled joints are NaN.
- A box is an array of shape (..., 4) holding (b_cx, b_cy, b_w, b_h) in pixels: its centre
  and its full width and height.
- Normalized coordinates are N(y; b) = diag(1/b_w, 1/b_h) (y - b_c): the box spans
  [-0.5, 0.5] on both axes.

Functions written with slicing and broadcasting only work on numpy arrays and on torch
tensors alike (the trainer calls them with tensors).
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from .skeletons import Skeleton

INPUT_SIZE = 220
"""Side of the square network input in pixels (the paper's 220x220)."""
MIN_INPUT_SIZE = 60
"""The smallest crop side psi takes (a cheaper refinement stage's, engine.network), pixels: its
last feature map keeps at least one cell."""

# Default pixel normalization applied to crops before the network: (value - MEAN) / STD, per
# channel, channels in OpenCV's BGR order. Training writes it into every manifest, and the
# runtime reads it from there (engine.model.Normalization).
PIXEL_MEAN = 127.5
PIXEL_STD = 64.0


def normalize(y, b):
    """N(y; b) of Eq. 1: joint(s) in pixels to coordinates normalized by box b.

    Args:
        y: (..., 2) pixel coordinates (numpy array or torch tensor).
        b: (..., 4) boxes (cx, cy, w, h) in pixels, broadcastable against ``y``'s leading
            dims; for a whole pose (P, k, 2) in boxes (P, 4) pass ``b[:, None]``.
    Returns:
        (..., 2) normalized coordinates; the box spans [-0.5, 0.5].
    """
    return (y - b[..., 0:2]) / b[..., 2:4]


def denormalize(u, b, angles=None):
    """N^-1(u; b), the inverse of :func:`normalize`: normalized coordinates to pixels.

    Args:
        u: (..., 2) coordinates normalized by ``b``.
        b: (..., 4) boxes (cx, cy, w, h) in pixels, broadcastable as in :func:`normalize`.
        angles: optional rotations of the boxes in radians, broadcastable against
            ``b[..., 0]`` (numpy only): the box's axes are turned by the angle, as the crop of
            :func:`crop_boxes` with the same ``angles``; pixel = c + R(angle) diag(w, h) u.
    Returns:
        (..., 2) pixel coordinates.
    """
    if angles is None:
        return u * b[..., 2:4] + b[..., 0:2]
    v = u * b[..., 2:4]
    cos, sin = np.cos(angles), np.sin(angles)
    out = np.empty(np.broadcast_shapes(v.shape, b[..., 0:2].shape), dtype=np.float64)
    out[..., 0] = cos * v[..., 0] - sin * v[..., 1] + b[..., 0]
    out[..., 1] = sin * v[..., 0] + cos * v[..., 1] + b[..., 1]
    return out


def diam(pose: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """diam(y): the torso diameter, distance from a shoulder to the opposite hip.

    Uses the first of ``skeleton.diam_pairs`` (left shoulder to right hip for FLIC) whose two
    joints are labelled, else the second pair.

    Args:
        pose: (..., k, 2) pose vectors in pixels; unlabelled joints NaN.
    Returns:
        (...,) diameters in pixels; NaN where no pair is labelled.
    """
    pose = np.asarray(pose, dtype=np.float64)
    out = np.full(pose.shape[:-2], np.nan)
    for a, b in reversed(skeleton.diam_pairs):
        d = np.linalg.norm(pose[..., a, :] - pose[..., b, :], axis=-1)
        out = np.where(np.isfinite(d), d, out)
    return out


def joint_boxes(pose: np.ndarray, sigma: float, skeleton: Skeleton, min_size: float | np.ndarray = 1.0) -> np.ndarray:
    """Joint boxes b_i(y; sigma) = (y_i, sigma*diam(y), sigma*diam(y)) of Eq. 7.

    Args:
        pose: (P, k, 2) current pose estimates in pixels (finite).
        sigma: box size in units of diam(y) (1.0 for FLIC, 2.0 for LSP).
        min_size: floor on the box side in pixels, scalar or (P,), guarding against a
            degenerate estimate whose shoulder and opposite hip coincide.
    Returns:
        (P, k, 4) square boxes (cx, cy, side, side) in pixels, one per joint.
    """
    pose = np.asarray(pose, dtype=np.float64)
    side = np.maximum(sigma * diam(pose, skeleton), min_size)
    side = np.where(np.isfinite(side), side, min_size)
    out = np.empty(pose.shape[:-1] + (4,), dtype=np.float64)
    out[..., 0:2] = pose
    out[..., 2] = side[..., None]
    out[..., 3] = side[..., None]
    return out


def box_to_crop_affine(boxes: np.ndarray, size: int = INPUT_SIZE, angles: np.ndarray | None = None) -> np.ndarray:
    """Affine maps from crop pixels to image pixels for N(x; b).

    Output pixel (u, v) of a ``size`` x ``size`` crop has its centre at normalized coordinates
    ((u + 0.5)/size - 0.5, (v + 0.5)/size - 0.5) of box b, optionally rotated by ``angles``
    about the box centre (training augmentation; rotated b0 at run time).

    Args:
        boxes: (B, 4) boxes (cx, cy, w, h) in pixels.
        angles: optional (B,) rotations in radians (positive turns the crop's content
            counter-clockwise on screen).
    Returns:
        (B, 2, 3) float64 matrices M with image_xy = M @ (u, v, 1).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    cos = np.ones(n) if angles is None else np.cos(angles)
    sin = np.zeros(n) if angles is None else np.sin(angles)
    sx = boxes[:, 2] / size
    sy = boxes[:, 3] / size
    m = np.empty((n, 2, 3))
    # image = c + R @ diag(w, h) @ ((u + 0.5)/size - 0.5)
    m[:, 0, 0] = cos * sx
    m[:, 0, 1] = -sin * sy
    m[:, 1, 0] = sin * sx
    m[:, 1, 1] = cos * sy
    off_u = 0.5 - size / 2.0
    m[:, 0, 2] = boxes[:, 0] + m[:, 0, 0] * off_u + m[:, 0, 1] * off_u
    m[:, 1, 2] = boxes[:, 1] + m[:, 1, 0] * off_u + m[:, 1, 1] * off_u
    return m


def crop_boxes(image: np.ndarray, boxes: np.ndarray, size: int = INPUT_SIZE, angles: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
    """N(x; b) for a batch of boxes: crop each box and resize it to ``size`` x ``size``.

    Boxes may extend past the frame: the outside is padded with zeros (black), never an error.
    Bilinear sampling. An axis-aligned box (angle 0) that lies inside the frame is cropped by
    resizing the whole-pixel region nearest to it (``cv2.resize``, 3 to 5 times faster than the
    general ``cv2.warpAffine`` path on 2 cores): each of its edges moves by at most half a frame
    pixel.

    Args:
        image: (H, W, 3) uint8 frame, BGR.
        boxes: (B, 4) boxes (cx, cy, w, h) in pixels.
        angles: optional (B,) rotations about the box centres, radians (augmentation; a
            person's roll at run time), as in :func:`box_to_crop_affine`.
        out: optional preallocated (B, size, size, 3) uint8 buffer to fill.
    Returns:
        (B, size, size, 3) uint8 crops, BGR.
    Raises:
        ValueError: if ``image`` is not an (H, W, 3) array.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if out is None:
        out = np.empty((len(b), size, size, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    # Axis-aligned boxes inside the frame: resize the whole-pixel region [x0, x1) x [y0, y1),
    # which maps crop pixel u to x0 - 0.5 + (u + 0.5) (x1 - x0) / size, where the affine map
    # gives cx - w/2 + (u + 0.5) w / size: each edge is rounded on its own, within half a pixel.
    # Upright means an angle of exactly 0, the value callers give for "not turned" (a literal 0.0:
    # turn_angles, trackers, cascade), never a computed one; any other angle, however small,
    # takes the exact map. Both paths agree within the half pixel above, so no crop depends on
    # which side of an exact comparison a float falls (tests/engine/test_geometry.py measures it).
    upright = np.ones(len(b), bool) if angles is None else np.nan_to_num(np.asarray(angles, np.float64)) == 0
    with np.errstate(invalid="ignore"):
        lo = np.floor(b[:, :2] - b[:, 2:] / 2 + 1.0)      # x0, y0
        hi = np.floor(b[:, :2] + b[:, 2:] / 2 + 1.0)      # x1, y1
        inside = upright & (lo >= 0).all(1) & (hi[:, 0] <= w) & (hi[:, 1] <= h) & (hi > lo).all(1)
    for i in np.flatnonzero(inside):
        (x0, y0), (x1, y1) = lo[i].astype(int), hi[i].astype(int)
        cv2.resize(image[y0:y1, x0:x1], (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
    rest = np.flatnonzero(~inside)   # the general affine map: turned, or past the border
    if len(rest):
        mats = box_to_crop_affine(b[rest], size, None if angles is None else np.asarray(angles)[rest])
        for i, m in zip(rest, mats):
            cv2.warpAffine(image, m, (size, size), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out


def to_network_input(crops: np.ndarray, out: np.ndarray | None = None, mean=PIXEL_MEAN, std=PIXEL_STD,
                     channel_order: str = "BGR") -> np.ndarray:
    """Turn uint8 crops (B, S, S, 3) BGR into the network's float32 (B, 3, S, S) input.

    Applies (value - mean[c]) / std[c] per channel c of ``channel_order``.

    Args:
        crops: (B, S, S, 3) uint8 crops, BGR (as :func:`crop_boxes` gives).
        out: optional preallocated (B, 3, S, S) float32 buffer to fill.
        mean, std: a number or 3 numbers (in ``channel_order``), 0..255 units; a model's
            values are in its manifest (:class:`engine.model.Normalization`).
        channel_order: "BGR" (channels as cropped) or "RGB" (reversed).
    Returns:
        (B, 3, S, S) float32.
    """
    if out is None:
        out = np.empty((crops.shape[0], 3, crops.shape[1], crops.shape[2]), dtype=np.float32)
    src = crops.transpose(0, 3, 1, 2)
    if channel_order == "RGB":
        src = src[:, ::-1]
    elif channel_order != "BGR":
        raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
    np.subtract(src, np.asarray(mean, np.float32).reshape(-1, 1, 1), out=out, dtype=np.float32)
    out *= (1.0 / np.asarray(std, np.float32)).reshape(-1, 1, 1)
    return out


def boxes_from_pose(pose: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Tight box around the labelled joints of each pose, grown by ``margin`` on every side.

    Args:
        pose: (..., k, 2) pixels, NaN for unlabelled joints.
        margin: fraction of the box size added on each side.
    Returns:
        (..., 4) boxes (cx, cy, w, h); NaN where no joint is labelled.
    """
    pose = np.asarray(pose, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN poses give NaN boxes
        lo = np.nanmin(pose, axis=-2)
        hi = np.nanmax(pose, axis=-2)
    c = (lo + hi) / 2
    wh = (hi - lo) * (1 + 2 * margin)
    return np.concatenate([c, wh], axis=-1)


def joints_in_frame(pose: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which joints lie on the frame: inside the pixel area [-0.5, W - 0.5] x [-0.5, H - 0.5]
    (pixel centres at integers, (0, 0) the top-left one).

    A full-body b0 may reach beyond the frame (legs out of view: the crop pads it), and the
    cascade then predicts those joints off the frame; keypoints files flag them
    (``in_frame``) and drawing leaves them out.

    Args:
        pose: (..., k, 2) pixels; NaN joints count as not in the frame.
        width, height: frame size in pixels.
    Returns:
        (..., k) bool.
    """
    pose = np.asarray(pose, dtype=np.float64)
    x, y = pose[..., 0], pose[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
