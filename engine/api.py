"""The library API: ``Pose(weights)(image) -> (joints, b0)``, and smoothing that composes on top.

    from deeppose import Pose, PoseSmoother

    pose = Pose()                                   # the shipped FLIC model, fastest backend here
    joints, b0 = pose(image)                        # (P, k, 2) pixels, (P, 4) person boxes
    ids, smooth = PoseSmoother()(joints, b0, t)     # video: persons followed, joints smoothed

:class:`Pose` is stateless across images: it is :class:`engine.pipeline.PosePipeline`, the
video command's and the app's pipeline, in still-image mode, so each image is processed as a
video's first frame: the multi-scale face search (the whole image and tiles, for small faces),
faces -> b0 by the model's face scaler (the whole image for models without one), the cascade,
every person of an image in one batch per stage, and the check that each pose's eyes and nose
land on its face. :class:`PoseSmoother` keeps the state of a video: it follows persons
across frames (:class:`engine.tracking.tracker.PersonTracker`) and One-Euro filters each one's joints
(:class:`engine.smoothing.OneEuroFilter`). The video command and the app use the pipeline
itself, which also follows each person by pose, holds a missed person's box for a few frames
and searches for small faces near tracked ones.

Coordinates are pixels of the image: x right, y down, (0, 0) the centre of the top-left pixel;
boxes are (cx, cy, w, h); joints are ordered as ``pose.joints`` (left/right person-centric).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import describe_regressors
from .config import DEFAULT_WEIGHTS, PipelineConfig
from .constants import B0Source
from .pipeline import PosePipeline
from .smoothing import OneEuroFilter, OneEuroParams
from .tracking.tracker import PersonTracker


@dataclass
class PoseEstimate:
    """Everything :meth:`Pose.estimate` found in one image (P persons, P may be 0).

    Attributes:
        joints: (P, k, 2) float64 final joints, pixels.
        b0: (P, 4) float64 person boxes (cx, cy, w, h) stage 1 cropped, pixels.
        stage_joints: (S, P, k, 2) the joints after each stage run, pixels.
        faces: (P, 4) the face box each b0 came from; NaN rows for full-image boxes.
        scores: (P,) how sure a person is there, in [0, 1]: with a psi v2 model (``weights/body``)
            the presence score of b0, otherwise the face detection score (0 for full-image boxes).
        sources: P strings, "face" (b0 from a detected face), "body" (psi v2: found without a
            face, b0 the box around the pose the whole image gave) or "frame" (b0 is the whole image).
    """

    joints: np.ndarray
    b0: np.ndarray
    stage_joints: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    sources: list[B0Source]


class Pose:
    """Estimate the poses of the persons in an image: ``joints, b0 = Pose()(image)``.

    Persons are found as the video command finds them on a video's first frame, by the same
    code (:class:`engine.pipeline.PosePipeline` in still-image mode): the multi-scale face
    search (the whole image, tiles for small faces; :func:`engine.pipeline.face_search`), one
    b0 per face by the model's face scaler, the cascade on all of them in one batch per stage,
    and the check of every estimate (:class:`engine.tracking.verify.PoseVerifier`: the predicted eyes
    and nose must land on the face, the shoulders below it; a second box on one face and a
    "face" on another person's body are dropped). Nothing is kept from one image to the next.

    Args:
        weights: model folder (default: the shipped FLIC model).
        backend: "auto" (the fastest available here), "onnxruntime", "torch", "tensorrt".
        stages: cascade stages to run, 1..S (default: all).
        fallback: when no person is found: None (no person) or "frame" (one person whose b0
            is the whole image, as for single-person photos). Models without a face scaler
            always take the whole image.
        min_face_confidence: face detector threshold (default: the one the scaler was fitted with).
        **options: further pipeline options (:class:`engine.config.PipelineConfig`), e.g.
            ``threads=2`` (the backend's and the face detector's CPU threads), ``int8=False``,
            ``rotate=True``, ``flip="first"``, ``max_persons=1``; still-image mode, no smoothing.
    Raises:
        engine.model.ModelError: the model folder cannot be used (one line; BackendError for
            a backend that cannot run it).
        engine.detection.faces.DetectorError: the face model cannot be loaded.
        ValueError: ``stages`` out of 1..S, an unknown ``fallback``, or a bad option value.
        TypeError: an option that does not exist, or ``smooth`` / ``still`` (fixed for still
            images; named).
    """

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, backend: str = "auto", stages: int | None = None,
                 fallback: str | None = None, min_face_confidence: float | None = None, **options):
        if fallback not in (None, "frame"):
            raise ValueError(f"fallback must be None or 'frame', got {fallback!r}")
        fixed = sorted({"smooth", "still"} & set(options))
        if fixed:   # one image, seen once: no smoothing, still-image mode
            raise TypeError(f"Pose() does not take {', '.join(fixed)}: it estimates still images "
                            "(PoseSmoother smooths a sequence)")
        config = PipelineConfig(weights, backend, stages, full_frame_fallback=fallback == "frame",
                                min_face_confidence=min_face_confidence, smooth=False, still=True).replace(**options)
        self._pipeline: PosePipeline | None = PosePipeline(config)
        self.cascade, self.info = self._pipeline.cascade, self._pipeline.info
        self.fallback = fallback

    @property
    def config(self) -> PipelineConfig:
        """The pipeline options in use, resolved for the model (:attr:`engine.pipeline.PosePipeline.config`)."""
        if self._pipeline is None:
            raise ValueError("this Pose was closed")
        return self._pipeline.config

    @property
    def stages(self) -> int:
        """Cascade stages run per image, 1..S."""
        return self._pipeline.stages if self._pipeline is not None else self.cascade.num_stages

    @property
    def joints(self) -> tuple[str, ...]:
        """The k joint names, in the order of the joints axis."""
        return tuple(self.info.skeleton.joints)

    @property
    def skeleton(self):
        """The model's :class:`engine.skeletons.Skeleton` (joints, edges for drawing, limbs)."""
        return self.info.skeleton

    @property
    def backend(self) -> str:
        """One line naming the backend, its version, device and precision."""
        return describe_regressors(self.cascade.regressors)

    def estimate(self, image: np.ndarray) -> PoseEstimate:
        """All of one image's results (see :class:`PoseEstimate`); persons in the order their
        faces were found (highest face score first).

        Args:
            image: (H, W, 3) uint8 image, BGR (as ``cv2.imread`` gives).
        Raises:
            ValueError: not an (H, W, 3) uint8 image; or the object was closed.
        """
        if self._pipeline is None:
            raise ValueError("this Pose was closed")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        res = self._pipeline.process(image, 0.0, 0)
        k, persons = len(self.joints), res.persons
        if not persons:
            empty = np.zeros((0, k, 2))
            return PoseEstimate(empty, np.zeros((0, 4)), np.zeros((res.stages, 0, k, 2)), np.zeros((0, 4)),
                                np.zeros(0), [])
        from_face = [p.b0_source == "face" for p in persons]
        nan4 = np.full(4, np.nan)
        return PoseEstimate(
            joints=np.stack([p.pose for p in persons]).astype(np.float64),
            b0=np.stack([p.b0 for p in persons]).astype(np.float64),
            stage_joints=np.stack([p.stage_poses for p in persons], axis=1).astype(np.float64),
            faces=np.stack([p.face if f and p.face is not None else nan4 for p, f in zip(persons, from_face)]),
            scores=np.array([p.score if f or self._pipeline.track_by_body else 0.0 for p, f in zip(persons, from_face)]),
            sources=[p.b0_source if p.b0_source in ("face", "body") else "frame" for p in persons])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The persons of one image: ``(joints, b0)``.

        Args:
            image: (H, W, 3) uint8 image, BGR.
        Returns:
            joints: (P, k, 2) float64, the final stage's joints of each person, pixels (x right,
                y down), in the order of :attr:`joints`; P = 0 when nobody is found.
            b0: (P, 4) float64, each person's box (cx, cy, w, h), pixels.
        Raises:
            ValueError: see :meth:`estimate`.
        """
        est = self.estimate(image)
        return est.joints, est.b0

    def close(self) -> None:
        """Release the face detector and the networks; idempotent."""
        if getattr(self, "_pipeline", None) is not None:
            self._pipeline.close()
        self._pipeline = None

    def __enter__(self) -> "Pose":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def joint_boxes(joints: np.ndarray) -> np.ndarray:
    """The bounding box of each person's joints.

    Args:
        joints: (P, k, 2) joints, pixels (NaN for missing ones).
    Returns:
        (P, 4) float64 boxes (cx, cy, w, h), pixels, w and h at least 1; NaN rows for persons
        with fewer than two finite joints.
    """
    joints = np.asarray(joints, dtype=np.float64)
    out = np.full((len(joints), 4), np.nan)
    for i, pose in enumerate(joints):
        pts = pose[np.isfinite(pose).all(axis=1)]
        if len(pts) >= 2:
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            out[i] = [*(lo + hi) / 2, *np.maximum(hi - lo, 1.0)]
    return out


class PoseSmoother:
    """Follow the persons of consecutive frames and One-Euro smooth each one's joints.

    Each call's persons are matched one to one to the previous ones (Hungarian assignment on
    box IoU, :class:`engine.tracking.tracker.PersonTracker`) by the bounding boxes of their joints
    (:func:`joint_boxes`, given to the tracker as its match boxes in place of faces), by b0
    for a person with fewer than two finite joints; so two persons with the same b0 are two
    persons, each with its own id and filter. A person left unmatched starts a new id and
    filter; a matched one keeps its id and filter; a person missed in a few frames keeps them
    when found again (the tracker's hold: at most ``max_hold_frames`` frames and
    ``max_hold_seconds``).

    Args:
        params: One-Euro parameters (default :class:`engine.smoothing.OneEuroParams`); the
            filter's speed term is scaled by each person's box size.
        tracker: the matcher (default ``PersonTracker()``).
    """

    def __init__(self, params: OneEuroParams | None = None, tracker: PersonTracker | None = None):
        self.params = params or OneEuroParams()
        self.tracker = tracker or PersonTracker()
        self._filters: dict[int, OneEuroFilter] = {}   # each followed person's filter, by track id

    def __call__(self, joints: np.ndarray, b0: np.ndarray, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Smooth one frame's output of :class:`Pose`.

        Args:
            joints: (P, k, 2) joints, pixels.
            b0: (P, 4) their person boxes (cx, cy, w, h), pixels.
            timestamp: the frame's time in seconds (increasing).
        Returns:
            (ids (P,) int64: each person's id, stable across frames while it is matched, distinct
            within a frame (-1, with the joints unsmoothed, for a person a tracker given with
            ``max_confirmed`` ignores at capacity); smoothed joints (P, k, 2) float64 pixels,
            in the input's order).
        Raises:
            ValueError: shapes that do not match.
        """
        joints = np.asarray(joints, dtype=np.float64)
        b0 = np.asarray(b0, dtype=np.float64).reshape(-1, 4)
        if joints.ndim != 3 or joints.shape[0] != len(b0) or joints.shape[2] != 2:
            raise ValueError(f"expected joints (P, k, 2) and b0 (P, 4), got {joints.shape} and {b0.shape}")
        tracks = self.tracker.update(b0, joint_boxes(joints), timestamp=timestamp)
        by_row = {tr.detection: tr for tr in tracks if tr.detection is not None}
        ids = np.full(len(b0), -1, dtype=np.int64)
        out = joints.copy()
        for i in range(len(b0)):
            tr = by_row.get(i)
            if tr is None:
                continue
            filt = self._filters.get(tr.track_id)
            if filt is None:
                filt = self._filters[tr.track_id] = OneEuroFilter(self.params)
            ids[i] = tr.track_id
            out[i] = filt(joints[i], float(timestamp), scale=float(max(b0[i, 2], b0[i, 3])))
        live = {tr.track_id for tr in self.tracker.tracks}   # a person the tracker let go has no filter
        for tid in [t for t in self._filters if t not in live]:
            del self._filters[tid]
        return ids, out

    def reset(self) -> None:
        """Forget every person (a new video)."""
        self.tracker.reset()
        self._filters.clear()
