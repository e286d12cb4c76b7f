"""Persons in a frame: the boxes b0 that start the cascade, from faces (FLIC protocol of the
paper), from the whole frame, or from a previous pose.

DeepPose (Sec. 4.1) runs FLIC from a face detector: the detected face box is enlarged by a fixed
scaler, fitted on the training data so that the enlarged box holds all labelled joints, and that
box is b0, the box of the stage-1 crop. Here the face detector is MediaPipe's BlazeFace
(full-range model by default, :class:`engine.detection.faces.FaceDetector`), run on LiteRT by
:mod:`engine.detection.blazeface` (or through MediaPipe Tasks' ``FaceDetector`` where LiteRT
has no wheel).

- :class:`FaceScaler`: face boxes -> b0 boxes (fitted by ``python main.py fit-scaler``).
- :class:`PersonBoxes`: the persons found in one frame; :func:`person_boxes`, the b0 rule
  shared by the runtime and by training and evaluation; :func:`frame_box`.
- :class:`PersonDetector`: one person per detected face; b0 = scaler.apply(face).
  :class:`FullFrameDetector`: one person whose b0 is the whole frame (LSP). Both have the
  :class:`engine.detection.protocols.PersonFinder` interface.
- Boxes from poses: :func:`joints_face` (the face the eyes and nose imply; tracking by pose),
  :func:`body_box` and :func:`torso_roll` (tracking by body), :func:`turn_angles` (rotated b0).

Boxes follow engine.geometry: (cx, cy, w, h) in pixels, x right, y down, (0, 0) the centre of
the top-left pixel.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..constants import B0Source
from .faces import (
    DEFAULT_FACE_MODEL,
    DEFAULT_MIN_CONFIDENCE,
    FACE_KEYPOINTS,
    FaceDetector,
    face_roll,
    face_size,
    faces_with_keypoints,
    plausible_face_keypoints,
)

# --------------------------------------------------------------------------- scaler

@dataclass
class FaceScaler:
    """The fixed map from a face box to b0, in units of the face size s = sqrt(w_f * h_f)::

        b0_cx = face_cx + offset_x * s      b0_w = scale_x * s
        b0_cy = face_cy + offset_y * s      b0_h = scale_y * s

    Fitted on FLIC training data by ``python main.py fit-scaler`` (tools/data/fit_scaler.py) so that
    b0 holds all labelled joints of a target fraction of training examples. Stored in the model
    manifest under "scaler" (:meth:`to_dict`), together with the face model file name and the
    detection threshold it was fitted with, which :class:`PersonDetector` uses.
    """

    offset_x: float
    offset_y: float
    scale_x: float
    scale_y: float
    face_model: str = DEFAULT_FACE_MODEL
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def apply(self, faces: np.ndarray, angles: np.ndarray | None = None) -> np.ndarray:
        """b0 boxes for face boxes.

        Args:
            faces: (N, 4) (or (..., 4)) face boxes (cx, cy, w, h) in pixels.
            angles: optional (N,) (or (...)) face roll in radians (see :func:`face_roll`): the
                offset from the face to b0's centre is turned with the face, so that b0 lies
                along the body of a tilted or lying person (b0 is then cropped rotated by the
                same angle, ``engine.geometry.crop_boxes(..., angles=...)``).
        Returns:
            (N, 4) b0 boxes (cx, cy, w, h) in pixels, float64; w and h are the box's size in
            its own (rotated) frame.
        """
        faces = np.asarray(faces, dtype=np.float64)
        s = face_size(faces)
        dx, dy = self.offset_x * s, self.offset_y * s
        if angles is not None:
            a = np.nan_to_num(np.asarray(angles, dtype=np.float64))
            dx, dy = np.cos(a) * dx - np.sin(a) * dy, np.sin(a) * dx + np.cos(a) * dy
        out = np.empty(faces.shape, dtype=np.float64)
        out[..., 0] = faces[..., 0] + dx
        out[..., 1] = faces[..., 1] + dy
        out[..., 2] = self.scale_x * s
        out[..., 3] = self.scale_y * s
        return out

    def to_dict(self) -> dict:
        """JSON-able dict: the six fields above plus whatever ``extra`` holds (fit statistics)."""
        d = asdict(self)
        extra = d.pop("extra")
        return {**d, **{k: v for k, v in extra.items() if k not in d}}

    @classmethod
    def from_dict(cls, d: dict) -> "FaceScaler":
        """Inverse of :meth:`to_dict`; keys other than the six fields go to ``extra``.

        Raises:
            ValueError: a required field (offset_x, offset_y, scale_x, scale_y) is missing or
                not a positive scale.
        """
        if not isinstance(d, dict):
            raise ValueError(f"scaler must be a dict, got {type(d).__name__}")
        missing = [k for k in ("offset_x", "offset_y", "scale_x", "scale_y") if k not in d]
        if missing:
            raise ValueError(f"scaler lacks {', '.join(missing)}")
        s = cls(
            offset_x=float(d["offset_x"]), offset_y=float(d["offset_y"]),
            scale_x=float(d["scale_x"]), scale_y=float(d["scale_y"]),
            face_model=str(d.get("face_model", DEFAULT_FACE_MODEL)),
            min_confidence=float(d.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
            extra={k: v for k, v in d.items() if k not in ("offset_x", "offset_y", "scale_x", "scale_y",
                                                            "face_model", "min_confidence")},
        )
        if not (s.scale_x > 0 and s.scale_y > 0 and math.isfinite(s.offset_x) and math.isfinite(s.offset_y)):
            raise ValueError(f"scaler has bad values: {s}")
        return s


def frame_box(width: int, height: int) -> np.ndarray:
    """(4,) box covering a whole width x height frame: centre ((W-1)/2, (H-1)/2), size (W, H)."""
    return np.array([(width - 1) / 2.0, (height - 1) / 2.0, float(width), float(height)])


# --------------------------------------------------------------------------- faces from poses

FACE_JOINTS = ("l_eye", "r_eye", "nose")
"""The face joints of a skeleton that :func:`joints_face` uses (FLIC has them; LSP does not)."""

DEFAULT_JOINTS_FACE = {"size_ratio": 2.0, "nose_weight": 1.5, "offset_x": 0.0, "offset_y": 0.09}
"""Fallback parameters of :func:`joints_face` for a scaler without "joints_face" (the fit on FLIC
train, rounded; ``fit-scaler`` writes the exact fitted values into the scaler's "joints_face")."""


def face_joint_indices(skeleton) -> list[int]:
    """Indices of the face joints (l_eye, r_eye, nose) in ``skeleton``; shorter if it lacks some."""
    return [skeleton.joints.index(n) for n in FACE_JOINTS if n in skeleton.joints]


def joints_face(pose: np.ndarray, skeleton, params: dict | None = None) -> np.ndarray:
    """The face box implied by the eyes and nose of poses (labelled or predicted); fitted by
    ``tools.data.fit_scaler.fit_joints_face`` on FLIC train against BlazeFace's boxes.

    With le, re, no the left eye, right eye and nose (pixels)::

        d = hypot(|le - re|, nose_weight * |(le + re)/2 - no|),   s = size_ratio * d
        centre = (le + re + no)/3 + (offset_x, offset_y) * s,     box = (cx, cy, s, s)

    (nose_weight keeps d's size on profile faces, where the eyes close up). Tracking by pose
    turns this box into the next frame's b0 with the :class:`FaceScaler`.

    Args:
        pose: (..., k, 2) poses in pixels (NaN where unlabelled).
        skeleton: their :class:`engine.skeletons.Skeleton`.
        params: size_ratio, nose_weight, offset_x, offset_y (default :data:`DEFAULT_JOINTS_FACE`);
            the scaler's ``extra["joints_face"]`` holds the fitted ones.
    Returns:
        (..., 4) square face boxes (cx, cy, s, s) in pixels; NaN where an eye or the nose is
        missing or the skeleton has no face joints.
    """
    p = {**DEFAULT_JOINTS_FACE, **(params or {})}
    pose = np.asarray(pose, dtype=np.float64)
    out = np.full(pose.shape[:-2] + (4,), np.nan)
    idx = face_joint_indices(skeleton)
    if len(idx) != 3:
        return out
    le, re, no = (pose[..., i, :] for i in idx)
    d = np.hypot(np.linalg.norm(le - re, axis=-1), p["nose_weight"] * np.linalg.norm((le + re) / 2 - no, axis=-1))
    s = p["size_ratio"] * np.maximum(d, 1e-6)
    c = (le + re + no) / 3
    out[..., 0] = c[..., 0] + p["offset_x"] * s
    out[..., 1] = c[..., 1] + p["offset_y"] * s
    out[..., 2] = s
    out[..., 3] = s
    return out


ROTATE_MIN_ROLL = 45.0
"""Rotated b0 turns a person only when the face's roll exceeds this many degrees. On FLIC val
(upright persons whose heads tilt up to 38 degrees) turning b0 with every face's roll cost
0.018 of mean PDJ@0.2 (0.817 -> 0.799, stage 3), turning it above 25 degrees 0.004: a tilted
head is not a tilted body. Above 45 degrees (no FLIC val example) the person is lying or
leaning, and an upright crop is what the model was trained on."""


def turn_angles(rolls: np.ndarray, min_roll: float = ROTATE_MIN_ROLL) -> np.ndarray:
    """The b0 rotation for face rolls: the roll where |roll| > ``min_roll`` degrees, else 0
    (NaN -> 0). Radians in, radians out."""
    rolls = np.nan_to_num(np.asarray(rolls, dtype=np.float64))
    return np.where(np.abs(rolls) > np.radians(min_roll), rolls, 0.0)


BODY_BOX_MARGIN = 1.35
"""Side of the b0 a pose gives (:func:`body_box`) over the joints' extent: the middle of the
1.15-1.6 that psi v2 trained on (``tools.train.sampling.SampleMaker._joint_box``)."""


def torso_roll(poses: np.ndarray, skeleton) -> np.ndarray:
    """The roll of bodies from their torso: the angle that turns the line from the hips' midpoint
    to the shoulders' midpoint straight up.

    Args:
        poses: (..., k, 2) poses in pixels (x right, y down).
        skeleton: their :class:`engine.skeletons.Skeleton`.
    Returns:
        (...,) radians in (-pi, pi]: 0 for shoulders straight above hips, positive when the body
        is turned clockwise on screen (pi: upside down); the ``angles`` convention of
        :func:`engine.geometry.crop_boxes` (as :func:`face_roll`). NaN where the skeleton has no
        shoulders and hips or they are not finite.
    """
    poses = np.asarray(poses, dtype=np.float64)
    names = skeleton.joints
    need = ("l_shoulder", "r_shoulder", "l_hip", "r_hip")
    if not all(n in names for n in need):
        return np.full(poses.shape[:-2], np.nan)
    ls, rs, lh, rh = (poses[..., names.index(n), :] for n in need)
    up = (ls + rs) / 2 - (lh + rh) / 2
    return np.arctan2(up[..., 0], -up[..., 1])


def body_box(poses: np.ndarray, angles: np.ndarray | None = None, margin: float = BODY_BOX_MARGIN) -> np.ndarray:
    """b0 from poses (tracking by body): the square around all the joints in the frame turned by
    each pose's roll, ``margin`` times their extent, as psi v2 trained on (joint boxes).

    Unsure joints count too: leaving out those below a confidence of 0.3 shrank the box of an
    athlete whose legs psi v2 was unsure of to his upper body, where presence fell below the
    keep threshold every other frame (animated LSP val: figure in 0.74 of the frames, 0.91 with
    every joint counted; walking.mp4's figures unchanged).

    Args:
        poses: (P, k, 2) poses in pixels.
        angles: (P,) b0 rolls, radians (the :func:`engine.geometry.crop_boxes` convention; None: 0).
        margin: side over the extent.
    Returns:
        (P, 4) boxes (cx, cy, side, side), pixels; NaN rows for poses with fewer than 3 finite joints.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, *np.shape(poses)[-2:])
    p = len(poses)
    a = np.zeros(p) if angles is None else np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(p))
    use = np.isfinite(poses).all(-1)
    c, s = np.cos(a)[:, None], np.sin(a)[:, None]
    x, y = poses[..., 0], poses[..., 1]
    u, v = c * x + s * y, -s * x + c * y             # R(-a) p: the pose as the upright crop sees it
    big = np.inf
    lo_u, hi_u = np.where(use, u, big).min(1), np.where(use, u, -big).max(1)
    lo_v, hi_v = np.where(use, v, big).min(1), np.where(use, v, -big).max(1)
    cu, cv = (lo_u + hi_u) / 2, (lo_v + hi_v) / 2
    side = margin * np.maximum(hi_u - lo_u, hi_v - lo_v)
    out = np.stack([c[:, 0] * cu - s[:, 0] * cv, s[:, 0] * cu + c[:, 0] * cv, side, side], axis=1)
    out[use.sum(1) < 3] = np.nan
    return out


@dataclass
class PersonBoxes:
    """The persons found in one frame (P may be 0).

    Attributes:
        b0: (P, 4) initial boxes (cx, cy, w, h) in pixels for the cascade.
        faces: (P, 4) the face box of each person; NaN rows where b0 is not from a face.
        scores: (P,) face detection scores; 0 where b0 is not from a face.
        sources: P strings: "face" (scaled face box), "frame" (whole-frame fallback) or "body"
            (tracking by body: the box around the pose the whole-frame search found).
        angles: (P,) roll of each b0 in radians (the face's roll, :func:`face_roll`; 0 for
            upright), or None: no rotation.
    """

    b0: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    sources: list[B0Source]
    angles: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.b0)


def person_boxes(image_size: tuple[int, int], scaler: "FaceScaler | None", faces: np.ndarray | None = None,
                 scores: np.ndarray | None = None, angles: np.ndarray | None = None,
                 fallback: str | None = "frame") -> PersonBoxes:
    """The b0 rule, one for the runtime (:class:`PersonDetector`, :class:`FullFrameDetector`)
    and for training and evaluation (``tools.data.person_boxes.example_b0``), after the paper's
    protocols (Sec. 4.1):

    - no scaler (LSP): one person whose b0 is the whole frame (:func:`frame_box`), source "frame";
    - each face: b0 = ``scaler.apply(face, angles)``, source "face";
    - no face: with ``fallback`` "frame" one person whose b0 is the whole frame (source
      "frame", angle 0 when ``angles`` is given), with None no person (P = 0).

    Args:
        image_size: (width, height) of the frame or image, pixels.
        scaler: the fitted :class:`FaceScaler`, or None.
        faces: (N, 4) face boxes (cx, cy, w, h) pixels (ignored without a scaler).
        scores: (N,) their detection scores (default 1).
        angles: (N,) b0 rotation in radians (:func:`turn_angles`), or None for upright boxes.
        fallback: "frame" or None, see above.
    Returns:
        :class:`PersonBoxes` (b0 (P, 4) pixels, float64).
    """
    w, h = image_size
    faces = np.zeros((0, 4)) if faces is None or scaler is None else np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    if len(faces) == 0:
        if scaler is not None and fallback is None:
            return PersonBoxes(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0), [],
                               None if angles is None else np.zeros(0))
        return PersonBoxes(frame_box(w, h)[None], np.full((1, 4), np.nan), np.zeros(1), ["frame"],
                           None if angles is None else np.zeros(1))
    scores = np.ones(len(faces)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    return PersonBoxes(scaler.apply(faces, angles).reshape(-1, 4), faces, scores, ["face"] * len(faces), angles)


class FullFrameDetector:
    """The person detector of models without a face scaler (LSP, as in the paper): one person
    per frame whose b0 is the whole frame (source "frame")."""

    def detect(self, image_bgr: np.ndarray, fallback: str | None = None) -> PersonBoxes:
        """One full-frame person for an (H, W, 3) image; ``fallback`` is accepted and ignored."""
        h, w = image_bgr.shape[:2]
        return person_boxes((w, h), None)

    def close(self) -> None:
        """Nothing to release."""


class PersonDetector:
    """Each detected face is a person; b0 = scaler.apply(face) (the paper's FLIC protocol).

    Faces whose BlazeFace keypoints are implausible (:func:`plausible_face_keypoints`) are
    dropped when the face detector gives keypoints (``detect_with_keypoints``).

    Args:
        scaler: the fitted :class:`FaceScaler` (``FaceScaler.from_dict(model_info.scaler)``).
        face_detector: a :class:`FaceDetector` to use (the caller keeps ownership), or None to
            open one with the scaler's face model and min_confidence (closed by :meth:`close`).
        max_persons: keep at most this many persons (highest face scores), None for all.
        rotate: turn each b0 with its face's roll (from the BlazeFace eyes, :func:`face_roll`)
            when that exceeds ``min_roll`` degrees (:func:`turn_angles`), so that a lying or
            leaning person gets an upright crop; ``PersonBoxes.angles`` then holds the angles
            (None when off).
        min_roll: see ``rotate`` (default :data:`ROTATE_MIN_ROLL`).
        check_keypoints: drop faces with implausible keypoints (default on).
    Raises:
        DetectorError: the scaler's face model cannot be loaded.
    """

    def __init__(self, scaler: FaceScaler, face_detector: FaceDetector | None = None,
                 max_persons: int | None = None, rotate: bool = False, check_keypoints: bool = True,
                 min_roll: float = ROTATE_MIN_ROLL):
        if isinstance(scaler, dict):
            scaler = FaceScaler.from_dict(scaler)
        self.scaler = scaler
        self._owns_detector = face_detector is None
        self.face_detector = face_detector or FaceDetector(scaler.face_model, scaler.min_confidence)
        self.max_persons = max_persons
        self.rotate = bool(rotate)
        self.min_roll = float(min_roll)
        self.check_keypoints = bool(check_keypoints)

    def detect(self, image_bgr: np.ndarray, fallback: str | None = None) -> PersonBoxes:
        """Find the persons of one frame.

        Args:
            image_bgr: (H, W, 3) uint8 BGR frame.
            fallback: what to return when no face is found: None -> no person (P = 0; the
                video pipeline applies its own hold policy); "frame" -> one person whose b0 is
                the whole frame (source "frame"), for still images.
        Returns:
            :class:`PersonBoxes`, persons ordered by face score, highest first.
        Raises:
            ValueError: unknown ``fallback`` or not an image.
            DetectorError: see :meth:`FaceDetector.detect`.
        """
        if fallback not in (None, "frame"):
            raise ValueError(f"fallback must be None or 'frame', got {fallback!r}")
        faces, scores, kps = faces_with_keypoints(self.face_detector, image_bgr)
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        kps = np.asarray(kps, dtype=np.float64).reshape(len(faces), len(FACE_KEYPOINTS), 2)
        if self.check_keypoints and len(faces):
            ok = plausible_face_keypoints(faces, kps)
            faces, scores, kps = faces[ok], scores[ok], kps[ok]
        if self.max_persons is not None:
            faces, scores, kps = faces[: self.max_persons], scores[: self.max_persons], kps[: self.max_persons]
        h, w = np.asarray(image_bgr).shape[:2]
        angles = turn_angles(face_roll(kps[:, 0], kps[:, 1]), self.min_roll) if self.rotate else None
        return person_boxes((w, h), self.scaler, faces, scores, angles, fallback)

    def close(self) -> None:
        """Close the face detector if this object opened it."""
        if self._owns_detector:
            self.face_detector.close()

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
