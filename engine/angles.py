"""Joint angles: elbow, shoulder, hip and knee angles of a pose, in degrees, in the image plane.

Each angle is the unsigned angle at a vertex joint between the segments to two other joints of
the same side (left and right are person-centric, as the joints):

============  ==========  ======================  ===========================================
angle         vertex      between                 reads
============  ==========  ======================  ===========================================
``l_elbow``   l_elbow     l_shoulder, l_wrist     180: arm straight; 90: forearm at a right angle
``r_elbow``   r_elbow     r_shoulder, r_wrist     (the same, right arm)
``l_shoulder`` l_shoulder l_hip, l_elbow          0: upper arm down along the torso; 90: arm
                                                  out sideways or forward; 180: arm straight up
``r_shoulder`` r_shoulder r_hip, r_elbow          (the same, right arm)
``l_hip``     l_hip       l_shoulder, l_knee      180: standing straight; 90: thigh at a right
                                                  angle to the torso (sitting)
``r_hip``     r_hip       r_shoulder, r_knee      (the same, right leg)
``l_knee``    l_knee      l_hip, l_ankle          180: leg straight; 90: knee bent at a right angle
``r_knee``    r_knee      r_hip, r_ankle          (the same, right leg)
============  ==========  ======================  ===========================================

An angle exists for a model whose skeleton has its three joints: FLIC (upper body) gives the
elbows and shoulders, LSP (full body) and ``body`` all eight. The angles are measured in the
2D image, between the projected limbs (a forearm pointing at the camera reads as anything):
they are values in [0, 180], never signed, and do not tell flexion from extension past 180.

An angle is unknown (NaN here, null in keypoints files) when one of its joints is not finite,
lies outside the frame (:func:`engine.geometry.joints_in_frame`) or coincides with the vertex.
Its confidence is the least confidence of its three joints (psi v2 models,
:attr:`engine.cascade.CascadeResult.confidence`): an upper bound of the probability that all
three lie within PDJ@0.2; NaN (null) for models without per-joint confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class AngleDef:
    """One joint angle: the unsigned angle at ``vertex`` between the segments to ``a`` and ``b``
    (joint names of :mod:`engine.skeletons`)."""

    name: str
    a: str
    vertex: str
    b: str


ANGLES: tuple[AngleDef, ...] = tuple(
    AngleDef(f"{s}_{name}", f"{s}_{a}", f"{s}_{name}", f"{s}_{b}")
    for name, a, b in (("elbow", "shoulder", "wrist"), ("shoulder", "hip", "elbow"),
                       ("hip", "shoulder", "knee"), ("knee", "hip", "ankle"))
    for s in ("l", "r"))
"""Every angle defined (see the module docstring), in the order keypoints files list them."""


@lru_cache(maxsize=16)
def angle_defs(skeleton) -> tuple[AngleDef, ...]:
    """The angles of :data:`ANGLES` whose three joints are all in ``skeleton`` (FLIC: the elbows
    and shoulders; LSP and body: all eight), in :data:`ANGLES` order."""
    joints = set(skeleton.joints)
    return tuple(d for d in ANGLES if {d.a, d.vertex, d.b} <= joints)


@lru_cache(maxsize=16)
def angle_indices(skeleton) -> np.ndarray:
    """(m, 3) int: the joint indices (a, vertex, b) of each angle of :func:`angle_defs`."""
    defs = angle_defs(skeleton)
    out = np.array([[skeleton.index(d.a), skeleton.index(d.vertex), skeleton.index(d.b)] for d in defs],
                    dtype=np.int64).reshape(len(defs), 3)
    out.flags.writeable = False   # cached: shared by every caller
    return out


def joint_angles(pose: np.ndarray, skeleton, valid: np.ndarray | None = None) -> np.ndarray:
    """The angles of :func:`angle_defs` of one or more poses, degrees.

    Args:
        pose: (..., k, 2) joints in pixels (any pixel convention: angles do not depend on it).
        skeleton: the pose's :class:`engine.skeletons.Skeleton`.
        valid: optional (..., k) bool, the joints that may be used (e.g. those in the frame);
            an angle with a joint not valid is NaN.
    Returns:
        (..., m) angles in [0, 180] degrees, NaN where unknown (a joint not finite or not
        valid, or a segment of zero length).
    """
    pose = np.asarray(pose, dtype=np.float64)
    idx = angle_indices(skeleton)
    a, v, b = (pose[..., idx[:, i], :] for i in range(3))      # (..., m, 2) each
    u, w = a - v, b - v
    nu, nw = np.hypot(u[..., 0], u[..., 1]), np.hypot(w[..., 0], w[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (u * w).sum(axis=-1) / (nu * nw)
        deg = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    deg = np.where((nu > 0) & (nw > 0), deg, np.nan)
    if valid is not None:
        ok = np.asarray(valid, dtype=bool)[..., idx].all(axis=-1)
        deg = np.where(ok, deg, np.nan)
    return deg


def angle_confidence(confidence: np.ndarray | None, skeleton) -> np.ndarray:
    """Each angle's confidence: the least of its three joints' confidences.

    Args:
        confidence: (..., k) per-joint confidence in [0, 1] (NaN: unknown), or None.
        skeleton: the model's skeleton.
    Returns:
        (..., m) in [0, 1]; NaN where a joint's confidence is unknown (all NaN for None).
    """
    idx = angle_indices(skeleton)
    if confidence is None:
        return np.full(len(idx), np.nan)
    c = np.asarray(confidence, dtype=np.float64)[..., idx]   # (..., m, 3)
    return c.min(axis=-1)    # NaN propagates: unknown if any joint's is
