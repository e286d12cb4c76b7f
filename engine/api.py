"""The library API: ``Pose(weights)(image) -> (joints, b0)``, and smoothing that composes on top.

    from deeppose import Pose, PoseSmoother

    pose = Pose()                                   # the shipped FLIC model, fastest backend here
    joints, b0 = pose(image)                        # (P, k, 2) pixels, (P, 4) person boxes
    ids, smooth = PoseSmoother()(joints, b0, t)     # video: persons followed by b0, joints smoothed

:class:`Pose` is stateless across images: person detection (faces -> b0 by the model's face
scaler; the whole image for models without one) and the cascade, every person of an image in
one batch per stage. :class:`PoseSmoother` keeps the state of a video: it follows persons
across frames by the overlap of their b0 boxes (:class:`engine.tracking.PersonTracker`) and
One-Euro filters each one's joints (:class:`engine.smoothing.OneEuroFilter`). The video
command and the app use :class:`engine.pipeline.PosePipeline`, which also holds a missed
person's box for a few frames and searches for small faces near tracked ones.

Coordinates are pixels of the image: x right, y down, (0, 0) the centre of the top-left pixel;
boxes are (cx, cy, w, h); joints are ordered as ``pose.joints`` (left/right person-centric).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import describe_regressors, load_cascade
from .detector import FaceScaler, FullFrameDetector, PersonDetector
from .pipeline import DEFAULT_WEIGHTS
from .smoothing import OneEuroFilter, OneEuroParams
from .tracking import PersonTracker


@dataclass
class PoseEstimate:
    """Everything :meth:`Pose.estimate` found in one image (P persons, P may be 0).

    Attributes:
        joints: (P, k, 2) float64 final joints, pixels.
        b0: (P, 4) float64 person boxes (cx, cy, w, h) stage 1 cropped, pixels.
        stage_joints: (S, P, k, 2) the joints after each stage run, pixels.
        faces: (P, 4) the face box each b0 came from; NaN rows for full-image boxes.
        scores: (P,) face detection scores (0 for full-image boxes).
        sources: P strings, "face" or "frame" (b0 is the whole image).
    """

    joints: np.ndarray
    b0: np.ndarray
    stage_joints: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    sources: list[str]


class Pose:
    """Estimate the poses of the persons in an image: ``joints, b0 = Pose()(image)``.

    Args:
        weights: model folder (default: the shipped FLIC model).
        backend: "auto" (the fastest available here), "onnxruntime", "torch", "tensorrt".
        stages: cascade stages to run, 1..S (default: all).
        fallback: when no face is found: None (no person) or "frame" (one person whose b0 is
            the whole image, as for single-person photos). Models without a face scaler
            (LSP) always take the whole image.
        min_face_confidence: face detector threshold (default: the one the scaler was fitted with).
        **backend_options: e.g. ``threads=2`` (see :func:`engine.backends.create_regressors`).
    Raises:
        engine.model.ModelError: the model folder cannot be used (one line; BackendError for
            a backend that cannot run it).
        engine.face_detector.DetectorError: the face model cannot be loaded.
    """

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, backend: str = "auto", stages: int | None = None,
                 fallback: str | None = None, min_face_confidence: float | None = None, **backend_options):
        if fallback not in (None, "frame"):
            raise ValueError(f"fallback must be None or 'frame', got {fallback!r}")
        self.cascade, self.info = load_cascade(weights, backend, **backend_options)
        if stages is not None and not 1 <= int(stages) <= self.cascade.num_stages:
            self.close()
            raise ValueError(f"stages must be in 1..{self.cascade.num_stages}, got {stages}")
        self.stages = None if stages is None else int(stages)
        self.fallback = fallback
        if self.info.scaler is None:
            self.detector = FullFrameDetector()
        else:
            scaler = FaceScaler.from_dict(self.info.scaler)
            if min_face_confidence is not None:
                scaler.min_confidence = float(min_face_confidence)
            self.detector = PersonDetector(scaler)   # opens (and closes) the scaler's face model

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
        """All of one image's results (see :class:`PoseEstimate`).

        Args:
            image: (H, W, 3) uint8 image, BGR (as ``cv2.imread`` gives).
        Raises:
            ValueError: not an (H, W, 3) uint8 image; or the object was closed.
        """
        if self.detector is None:
            raise ValueError("this Pose was closed")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        found = self.detector.detect(image, self.fallback)
        res = self.cascade.run(image, found.b0, self.stages)
        return PoseEstimate(res.poses.copy(), res.b0.copy(), res.stage_poses, np.asarray(found.faces, float),
                            np.asarray(found.scores, float), list(found.sources))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(joints (P, k, 2), b0 (P, 4))`` of an (H, W, 3) uint8 BGR image, pixels; see :meth:`estimate`."""
        est = self.estimate(image)
        return est.joints, est.b0

    def close(self) -> None:
        """Release the face detector and the networks; idempotent."""
        for r in self.cascade.regressors:
            r.close()
        if getattr(self, "detector", None) is not None:
            self.detector.close()
        self.detector = None

    def __enter__(self) -> "Pose":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PoseSmoother:
    """Follow the persons of consecutive frames and One-Euro smooth each one's joints.

    Persons are matched to the previous frame's by the IoU of their b0 boxes (Hungarian
    assignment, :class:`engine.tracking.PersonTracker`); a new person starts a new filter.

    Args:
        params: One-Euro parameters (default :class:`engine.smoothing.OneEuroParams`); the
            filter's speed term is scaled by each person's box size.
        tracker: the matcher (default ``PersonTracker()``).
    """

    def __init__(self, params: OneEuroParams | None = None, tracker: PersonTracker | None = None):
        self.params = params or OneEuroParams()
        self.tracker = tracker or PersonTracker()

    def __call__(self, joints: np.ndarray, b0: np.ndarray, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        """Smooth one frame's output of :class:`Pose`.

        Args:
            joints: (P, k, 2) joints, pixels.
            b0: (P, 4) their person boxes, pixels.
            timestamp: the frame's time in seconds (increasing).
        Returns:
            (ids (P,) int: the person's id, stable across frames while it is matched;
            smoothed joints (P, k, 2), same order as the input).
        Raises:
            ValueError: shapes that do not match.
        """
        joints = np.asarray(joints, dtype=np.float64)
        b0 = np.asarray(b0, dtype=np.float64).reshape(-1, 4)
        if joints.ndim != 3 or joints.shape[0] != len(b0) or joints.shape[2] != 2:
            raise ValueError(f"expected joints (P, k, 2) and b0 (P, 4), got {joints.shape} and {b0.shape}")
        tracks = self.tracker.update(b0, timestamp=timestamp)
        detected = {tr.b0.tobytes(): tr for tr in tracks if tr.misses == 0}
        ids = np.zeros(len(b0), dtype=np.int64)
        out = np.empty_like(joints)
        for i in range(len(b0)):
            tr = detected[b0[i].tobytes()]
            filt = tr.state.setdefault("filter", OneEuroFilter(self.params))
            ids[i] = tr.track_id
            out[i] = filt(joints[i], float(timestamp), scale=float(max(b0[i, 2], b0[i, 3])))
        return ids, out

    def reset(self) -> None:
        """Forget every person (a new video)."""
        self.tracker.reset()
