"""Is an estimate a person? The cascade checks its own candidates: the eyes and nose it predicts
must land on the face b0 came from, with the shoulders below it (:class:`PoseVerifier`,
:class:`VerifyParams`), and a "face" lying on another person's arm or torso is not a person
(:func:`on_bodies`). Plain arrays in, bool masks out: no model, no image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detection.faces import face_size
from ..detection.persons import joints_face


@dataclass
class VerifyParams:
    """Thresholds of :class:`PoseVerifier`, in face sizes s = sqrt(w * h) of the reference face.

    Measured on walking.mp4 (every 12th frame, the shipped model, stage 3): on the 40 real
    faces the eyes and nose imply a face at most 0.35 s from the detected one, 0.59-1.19 times
    its size, shoulders 0.47-1.28 s below its centre and 1.16-2.5 s apart.

    Attributes:
        max_shift: largest distance from the face the eyes and nose imply (``joints_face``) to
            the reference face, centre to centre (0.5).
        max_scale: largest size ratio between the two, either way (1.8).
        min_shoulder_drop: least height of the shoulders' midpoint below the face centre (0.25),
            measured along the face's upright axis.
        min_shoulder_width: least distance between the shoulders (0.6).
        max_pose_shift, max_pose_scale, min_pose_scale: the limits for an estimate whose
            reference face is the one the previous frame's pose implied (tracking by pose:
            frame-to-frame consistency): shift at most 0.4, size 0.6-1.3x. Measured on
            walking.mp4 (detection every 5th frame): 90% of such estimates shift by at most
            0.17 s and change size by 0.86-1.15x, the walker's down to 0.70x in a frame where
            he turns his head; a pose sliding onto someone passing in front grew 1.6x in one
            frame, three frames in a row.
    """

    max_shift: float = 0.5
    max_scale: float = 1.8
    min_shoulder_drop: float = 0.25
    min_shoulder_width: float = 0.6
    max_pose_shift: float = 0.4
    max_pose_scale: float = 1.3
    min_pose_scale: float = 0.6


class PoseVerifier:
    """Whether each estimated pose is a person whose face is the reference face: the cascade
    checks its own candidate (a "face" found on a hand, a belt or a bin gets a pose whose eyes
    and nose do not land on it, or whose shoulders are not below it).

    Checks, in units of the reference face's size s (see :class:`VerifyParams`): the face the
    predicted eyes and nose imply (:func:`engine.detection.persons.joints_face`) lies near the
    reference face and has about its size; the shoulders are below the face (in the face's
    upright frame when ``angles`` is given) and apart. Every joint used must be finite.

    Args:
        params: thresholds (None: the defaults, :class:`VerifyParams`); settable as :attr:`params`.
        skeleton: the poses' :class:`engine.skeletons.Skeleton`; without eyes, nose and
            shoulders nothing is checked (every pose passes).
        joints_face_params: the scaler's "joints_face" parameters (default
            :data:`engine.detection.persons.DEFAULT_JOINTS_FACE`).
    """

    def __init__(self, params: VerifyParams | None, skeleton, joints_face_params: dict | None = None):
        self.params = params or VerifyParams()
        self.skeleton = skeleton
        self.joints_face_params = joints_face_params

    def implied_faces(self, poses: np.ndarray) -> np.ndarray:
        """The faces (P, 4) (cx, cy, s, s) pixels the eyes and nose of poses (P, k, 2) imply
        (:func:`engine.detection.persons.joints_face` with this verifier's parameters); NaN rows
        where a face joint is missing or the skeleton has none."""
        return joints_face(poses, self.skeleton, self.joints_face_params)

    def check(self, poses: np.ndarray, faces: np.ndarray, angles: np.ndarray | None = None,
              from_pose: np.ndarray | None = None, implied: np.ndarray | None = None) -> np.ndarray:
        """Verify P estimates.

        Args:
            poses: (P, k, 2) estimated poses, pixels.
            faces: (P, 4) reference face boxes (cx, cy, w, h), pixels: the face b0 was made from
                (detected, or implied by the previous pose when tracking by pose).
            angles: (P,) roll of each person, radians (default 0; NaN counts as 0).
            from_pose: (P,) bool, True where the reference face is the one the previous pose
                implied (held to the ``*_pose_*`` limits); default all False.
            implied: (P, 4) the faces the poses imply, if the caller has them already (default:
                :meth:`implied_faces`).
        Returns:
            (P,) bool: True where the pose is the reference face's person. All True when the
            skeleton lacks shoulders or no pose implies a face (nothing to check).
        """
        prm, skeleton = self.params, self.skeleton
        poses = np.asarray(poses, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        p = len(faces)
        names = ("l_shoulder", "r_shoulder")
        if p == 0 or not all(n in skeleton.joints for n in names):
            return np.ones(p, bool)
        if implied is None:
            implied = self.implied_faces(poses)                                 # (P, 4)
        if not np.isfinite(implied).any():
            return np.ones(p, bool)
        s = np.maximum(face_size(faces), 1e-6)
        shift = np.linalg.norm(implied[:, :2] - faces[:, :2], axis=1) / s
        scale = implied[:, 2] / s
        a = np.zeros(p) if angles is None else np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(p))
        ls, rs = (poses[:, skeleton.joints.index(n)] for n in names)
        mid = (ls + rs) / 2 - faces[:, :2]
        drop = (-np.sin(a) * mid[:, 0] + np.cos(a) * mid[:, 1]) / s             # along the face's "down"
        width = np.linalg.norm(ls - rs, axis=1) / s
        tracked = np.zeros(p, bool) if from_pose is None else np.asarray(from_pose, bool).reshape(p)
        max_shift = np.where(tracked, prm.max_pose_shift, prm.max_shift)
        max_scale = np.where(tracked, prm.max_pose_scale, prm.max_scale)
        min_scale = np.where(tracked, prm.min_pose_scale, 1.0 / prm.max_scale)
        with np.errstate(invalid="ignore"):
            ok = ((shift <= max_shift) & (scale <= max_scale) & (scale >= min_scale)
                  & (drop >= prm.min_shoulder_drop) & (width >= prm.min_shoulder_width))
        return ok & np.isfinite(implied).all(axis=1)


def verify_poses(poses: np.ndarray, faces: np.ndarray, skeleton, joints_face_params: dict | None = None,
                 angles: np.ndarray | None = None, params: VerifyParams | None = None,
                 from_pose: np.ndarray | None = None, implied: np.ndarray | None = None) -> np.ndarray:
    """:meth:`PoseVerifier.check` in one call: ``PoseVerifier(params, skeleton,
    joints_face_params).check(poses, faces, angles, from_pose, implied)`` (see there for the
    arguments, in the same units).

    Returns:
        (P,) bool.
    """
    return PoseVerifier(params, skeleton, joints_face_params).check(poses, faces, angles, from_pose, implied)


BODY_SEGMENTS = (("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("r_shoulder", "r_elbow"),
                 ("r_elbow", "r_wrist"), ("l_shoulder", "l_hip"), ("r_shoulder", "r_hip"), ("l_hip", "r_hip"))
"""The limbs and torso sides :func:`on_bodies` tests against."""


def on_bodies(points: np.ndarray, poses: np.ndarray, sizes: np.ndarray, skeleton, radius: float = 0.6) -> np.ndarray:
    """Whether points lie on the bodies of estimated persons: inside a torso (the quadrilateral
    of shoulders and hips) or within ``radius`` face sizes of an arm or a torso side. A face
    found there is a hand, a belt or a pattern on someone's clothes, not a new person.

    Args:
        points: (M, 2) pixels (e.g. the centres of new face detections).
        poses: (P, k, 2) the persons' poses, pixels.
        sizes: (P,) their face sizes, pixels.
        skeleton: with shoulders, elbows, wrists and hips (else nothing is on a body).
    Returns:
        (M,) bool.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poses = np.asarray(poses, dtype=np.float64)
    out = np.zeros(len(points), bool)
    need = {n for seg in BODY_SEGMENTS for n in seg}
    if not len(points) or not len(poses) or not need <= set(skeleton.joints):
        return out
    j = skeleton.joints.index
    for pose, size in zip(poses, np.asarray(sizes, dtype=np.float64).reshape(-1)):
        if not np.isfinite(pose[[j(n) for n in need]]).all():
            continue
        r = radius * size
        for a, b in BODY_SEGMENTS:
            pa, pb = pose[j(a)], pose[j(b)]
            ab = pb - pa
            tt = np.clip(((points - pa) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
            out |= np.linalg.norm(points - (pa + tt[:, None] * ab), axis=1) <= r
        quad = np.array([pose[j("l_shoulder")], pose[j("r_shoulder")], pose[j("r_hip")], pose[j("l_hip")]])
        edge = np.roll(quad, -1, axis=0) - quad                              # (4, 2)
        rel = points[:, None, :] - quad[None]                                # (M, 4, 2)
        cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
        out |= (cross >= 0).all(axis=1) | (cross <= 0).all(axis=1)
    return out
