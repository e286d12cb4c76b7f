"""One frame's path, shared by the video command and the desktop app:

    frame (H, W, 3) uint8 BGR
      -> person detector (faces -> b0 via the model's face scaler)
      -> tracker (match persons to the previous frame by b0 IoU; hold a missed person's b0)
      -> cascade (all persons of the frame through each stage in one batch, Sec. 3.2)
      -> One-Euro smoothing per person (optional)
      -> :class:`FrameResult`

:class:`PosePipeline` owns the model, the detector, the tracker and the per-person filters.
It is not thread-safe (one thread calls :meth:`PosePipeline.process`), but ``stages`` and
``smooth`` may be set from another thread at any time: they are read once per frame.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detector import frame_box
from .smoothing import OneEuroFilter, OneEuroParams
from .tracking import PersonTracker, TrackingFaceDetector

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "flic"
"""The default model folder, ``weights/flic`` at the repository root."""


@dataclass
class PersonResult:
    """One person's pose in one frame.

    Attributes:
        track_id: the person's id, stable across frames while tracked (0 for the full-frame
            fallback person).
        b0: (4,) the person box (cx, cy, w, h) stage 1 cropped, pixels.
        face: (4,) the detected face box b0 was derived from, pixels; None when held or
            full-frame.
        b0_source: "face" (from this frame's face), "held" (the last b0 of a person whose
            face was missed in this frame) or "frame" (the whole frame, fallback).
        stage_poses: (S, k, 2) raw cascade output of each stage run, pixels.
        pose: (k, 2) final pose in pixels: the last stage, One-Euro smoothed when smoothing
            is on.
        score: face detection score (of the last detection for a held person).
        smoothed: whether ``pose`` is smoothed.
    """

    track_id: int
    b0: np.ndarray
    face: np.ndarray | None
    b0_source: str
    stage_poses: np.ndarray
    pose: np.ndarray
    score: float = 1.0
    smoothed: bool = False

    @property
    def stage(self) -> int:
        """The cascade stage (1-based) ``pose`` comes from."""
        return int(self.stage_poses.shape[0])


@dataclass
class FrameResult:
    """Everything the pipeline found in one frame.

    Attributes:
        index: frame index since the last :meth:`PosePipeline.reset` (or as given).
        timestamp: frame time in seconds (video time, or seconds since the first live frame).
        persons: one :class:`PersonResult` per person (empty when nobody is in the frame).
        detect_seconds: person detection time, seconds.
        stage_seconds: per stage run, wall time (crop + regress + update), seconds.
        total_seconds: the whole of :meth:`PosePipeline.process`, seconds.
        backend: the runtime backend's name.
        frame_size: (width, height) of the frame, pixels.
        stages: cascade stages run on this frame (1..S).
    """

    index: int
    timestamp: float
    persons: list[PersonResult]
    detect_seconds: float
    stage_seconds: list[float]
    total_seconds: float
    backend: str
    frame_size: tuple[int, int] = (0, 0)
    stages: int = 0


class PosePipeline:
    """Frames in, poses out: person detection, tracking, the cascade and smoothing.

    Args:
        weights: model folder (manifest.json + stage checkpoints); default ``weights/flic``.
        backend: "auto" (the fastest available), "torch", "onnxruntime", "tensorrt".
        stages: how many cascade stages to run, 1..S (default all).
        smooth: One-Euro smoothing per person across frames.
        detector: an object with ``detect(frame) -> PersonBoxes`` (``.b0``, ``.faces``,
            ``.scores``) and ``close()`` (not closed by :meth:`close`); default: an
            :class:`engine.detector.PersonDetector` with the model's face scaler over a
            :class:`engine.tracking.TrackingFaceDetector`, which also finds the small faces
            of distant persons (tiles, and windows around tracked faces); for a model without
            a face scaler (LSP) an :class:`engine.detector.FullFrameDetector` (b0 = the frame).
        smoothing: One-Euro parameters (see :class:`engine.smoothing.OneEuroParams`).
        tracker: a :class:`engine.tracking.PersonTracker` (default: IoU 0.3, hold 15 frames / 0.5 s).
        full_frame_fallback: when nobody is detected or held, estimate one person with the
            whole frame as b0 (source "frame"), as the paper does for LSP. Default: on for
            models without a face scaler whose skeleton is LSP, off otherwise.
        min_face_confidence: face detector score threshold (used when ``detector`` is None;
            default: the one the scaler was fitted with).
        threads: CPU threads for inference (PyTorch's and the backend's); default: theirs.
        backend_options: passed to the backend (e.g. ``device="cpu"``).
    Raises:
        engine.model.ModelError: the model folder cannot be used (one-line message).
    """

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, backend: str = "auto", stages: int | None = None,
                 smooth: bool = True, detector=None, smoothing: OneEuroParams | None = None,
                 tracker: PersonTracker | None = None, full_frame_fallback: bool | None = None,
                 min_face_confidence: float | None = None, threads: int | None = None, **backend_options):
        from .backends import load_cascade

        self.weights = Path(weights)
        if threads:
            backend_options["threads"] = int(threads)   # every CPU backend takes it (torch: set_num_threads)
        self.cascade, self.info = load_cascade(self.weights, backend, **backend_options)
        self._backend = self.cascade.regressors[0].name
        self.smoothing = smoothing or OneEuroParams()
        self.tracker = tracker or PersonTracker()
        self.smooth = bool(smooth)
        self._stages: int | None = None
        self.stages = stages
        if full_frame_fallback is None:
            full_frame_fallback = self.info.scaler is None and self.skeleton.name == "lsp"
        self.full_frame_fallback = bool(full_frame_fallback)
        self._owns_detector = detector is None
        self.face_search: TrackingFaceDetector | None = None
        if detector is None:
            detector = self._make_detector(min_face_confidence)
        self.detector = detector
        self._frame_filter: OneEuroFilter | None = None  # the full-frame fallback person's filter
        self._index = 0
        self._t_origin: float | None = None
        self._last_stages = None

    def _make_detector(self, min_confidence: float | None):
        from .detector import FaceDetector, FaceScaler, FullFrameDetector, PersonDetector
        if self.info.scaler is None:  # e.g. LSP: b0 is the whole frame (paper, Sec. 4.1)
            log.info("model %s has no face scaler: b0 is the full frame", self.weights)
            return FullFrameDetector()
        scaler = FaceScaler.from_dict(self.info.scaler)
        if min_confidence is not None:
            scaler.min_confidence = float(min_confidence)
        self.face_search = TrackingFaceDetector(FaceDetector(scaler.face_model, scaler.min_confidence))
        return PersonDetector(scaler, self.face_search)

    # -- settings -----------------------------------------------------------------------
    @property
    def skeleton(self):
        """The model's :class:`engine.skeletons.Skeleton`."""
        return self.cascade.skeleton

    @property
    def num_stages(self) -> int:
        """S, the number of stages of the loaded cascade."""
        return self.cascade.num_stages

    @property
    def backend_name(self) -> str:
        """The runtime backend in use ("torch", "onnxruntime", "tensorrt")."""
        return self._backend

    @property
    def backend_description(self) -> str:
        """One line naming the backend, its library version, device and precision (and why
        ``auto`` chose it), e.g. "onnxruntime 1.31.1 (CPUExecutionProvider, 2 threads) [...]"."""
        from .backends import describe_regressors
        return describe_regressors(self.cascade.regressors)

    @property
    def stages(self) -> int:
        """Stages run per frame, 1..S (setting None means S)."""
        return self._stages

    @stages.setter
    def stages(self, value: int | None) -> None:
        s = self.num_stages if value is None else int(value)
        if not 1 <= s <= self.num_stages:
            raise ValueError(f"stages must be in 1..{self.num_stages}, got {value}")
        self._stages = s

    # -- processing ---------------------------------------------------------------------
    def process(self, frame_bgr: np.ndarray, timestamp: float | None = None, index: int | None = None) -> FrameResult:
        """Estimate the pose of every person in one frame.

        Args:
            frame_bgr: (H, W, 3) uint8 frame, BGR.
            timestamp: frame time in seconds (video: frame index / fps). Default: seconds
                since the first frame processed after construction or :meth:`reset`
                (wall clock; for live sources).
            index: frame index to record (default: frames processed since :meth:`reset`).
        Returns:
            A :class:`FrameResult`.
        Raises:
            ValueError: ``frame_bgr`` is not an (H, W, 3) uint8 image.
        """
        t_start = time.perf_counter()
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got {None if frame_bgr is None else frame_bgr.shape}")
        if self._t_origin is None:
            self._t_origin = t_start
        ts = (t_start - self._t_origin) if timestamp is None else float(timestamp)
        idx = self._index if index is None else int(index)
        self._index = idx + 1
        stages, smooth = self._stages, self.smooth
        if stages != self._last_stages:   # a different stage gives different poses: restart the filters
            self._reset_filters()
            self._last_stages = stages

        t = time.perf_counter()
        if self.face_search is not None:
            self.face_search.set_hints([tr.last_face for tr in self.tracker.tracks if tr.last_face is not None])
        found = self.detector.detect(frame_bgr)
        detect_s = time.perf_counter() - t
        faces = np.asarray(found.faces, dtype=np.float64).reshape(-1, 4)
        tracks = self.tracker.update(found.b0, faces, found.scores, ts, sources=found.sources, frame_index=idx)

        h, w = frame_bgr.shape[:2]
        if tracks:
            b0 = np.stack([tr.b0 for tr in tracks])
        elif self.full_frame_fallback:
            b0 = frame_box(w, h)[None]
        else:
            b0 = np.zeros((0, 4))
        res = self.cascade.run(frame_bgr, b0, stages)
        final = res.stage_poses[-1]                                # (P, k, 2)

        persons: list[PersonResult] = []
        for i in range(len(b0)):
            raw = final[i]
            if tracks:
                tr = tracks[i]
                filt = tr.state.get("filter")
                tid, face, source, score = tr.track_id, tr.face, tr.source, tr.score
            else:
                filt = self._frame_filter
                tid, face, source, score = 0, None, "frame", 1.0
            if smooth:
                if filt is None:
                    filt = OneEuroFilter(self.smoothing)
                    if tracks:
                        tracks[i].state["filter"] = filt
                    else:
                        self._frame_filter = filt
                pose = filt(raw, ts, scale=float(max(b0[i, 2], b0[i, 3])))
            else:
                if filt is not None:
                    filt.reset()
                pose = raw.copy()
            persons.append(PersonResult(tid, b0[i].copy(), None if face is None else np.asarray(face).copy(),
                                        source, res.stage_poses[:, i].copy(), pose, float(score), smooth))
        if tracks or not self.full_frame_fallback:
            self._frame_filter = None
        return FrameResult(idx, ts, persons, detect_s, list(res.stage_seconds), time.perf_counter() - t_start,
                           self._backend, (w, h), stages)

    def warmup(self, frame_size: tuple[int, int] = (640, 480)) -> None:
        """Run every stage once on a blank frame (first-call costs: allocation, engine builds)."""
        frame = np.zeros((frame_size[1], frame_size[0], 3), np.uint8)
        self.cascade.run(frame, np.array([[frame_size[0] / 2, frame_size[1] / 2, 200.0, 200.0]]))

    def _reset_filters(self) -> None:
        for tr in self.tracker.tracks:
            tr.state.pop("filter", None)
        self._frame_filter = None

    def reset(self) -> None:
        """Start a new video or source: forget tracks, filters, the frame counter and clock."""
        self.tracker.reset()
        if self.face_search is not None:
            self.face_search.reset()
        self._frame_filter = None
        self._index = 0
        self._t_origin = None

    def close(self) -> None:
        """Release the detector (if this pipeline made it) and the cascade's networks; idempotent."""
        for r in self.cascade.regressors:
            r.close()
        if self._owns_detector and self.detector is not None:
            self.detector.close()
            if self.face_search is not None:
                self.face_search.close()
        self.detector = None
        self.face_search = None

    def __enter__(self) -> "PosePipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
