"""The inference worker: a QThread that turns the newest captured frame into an annotated image.

Threads of the app:

- capture (app/capture.py, a Python thread): reads the camera or file into a
  :class:`~app.capture.LatestFrameSlot` that holds only the newest frame;
- inference (this module): takes the newest frame through the frame loop that the video
  command runs too (:class:`engine.frames.FrameLoop`: :class:`engine.pipeline.PosePipeline`,
  drawing, recording with :class:`engine.recording.PoseRecorder`) and converts the frame to a
  QImage;
- GUI: only shows the newest :class:`DisplayFrame` (:meth:`InferenceWorker.take_display`).

No queue grows anywhere: the capture slot and the display slot each hold one item, so a slow
model drops frames (counted) instead of falling behind. The model is (re)loaded on this thread,
so loading never blocks the window. Settings arrive through :meth:`InferenceWorker.configure`
and are applied between frames: the pipeline's as one :class:`engine.config.PipelineConfig`
(:meth:`engine.config.PipelineConfig.from_settings`), live where the pipeline takes them
(:meth:`engine.pipeline.PosePipeline.apply`), by a new pipeline otherwise.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QThread, pyqtSignal
from PyQt6.QtGui import QImage

from ..engine.config import PipelineConfig
from .capture import LatestFrameSlot

log = logging.getLogger(__name__)


def one_line(e: BaseException) -> str:
    """A one-line description of an exception for the status bar."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if type(e).__name__ in ("ModelError", "RuntimeError", "DatasetError") else f"{type(e).__name__}: {text}"


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """(H, W, 3) uint8 BGR -> a QImage owning a copy of the pixels (safe to hand to the GUI thread)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_BGR888).copy()


@dataclass
class ModelStatus:
    """What the worker loaded: shown in the settings panel and the HUD."""

    folder: str
    backend: str          # short: backend, library version, device
    description: str      # the backend's full description (with why "auto" chose it)
    num_stages: int
    skeleton: str
    name: str


@dataclass
class DisplayFrame:
    """One annotated frame ready for the GUI.

    Attributes:
        image: the annotated frame as a QImage (frame pixels, not scaled).
        frame_size: (width, height) of the frame, pixels.
        index: the frame's index in its source.
        captured: ``time.perf_counter()`` when the frame was read (latency = display time - captured).
        result: the :class:`engine.pipeline.FrameResult`, or None when no model is loaded.
        dropped: frames of this source dropped so far (inference did not keep up).
        captured_count: frames read from this source so far.
        processed: frames the worker has processed from this source.
        backend: backend name of the loaded model ("" when none).
        source_fps: the source's nominal frame rate.
        recording: whether a recording is being written.
        skeleton: the skeleton of the model that made ``result`` (None without a model).
    """

    image: QImage
    frame_size: tuple[int, int]
    index: int
    captured: float
    result: object | None
    dropped: int
    captured_count: int
    processed: int
    backend: str
    source_fps: float
    recording: bool
    skeleton: object | None = None


class InferenceWorker(QThread):
    """Runs the pipeline on the newest frame of ``slot``; see the module docstring.

    Signals (queued to the GUI thread):
        frameReady(): a new :class:`DisplayFrame` waits in :meth:`take_display` (emitted again
            only after the GUI took the previous one).
        modelLoading(str): model folder being loaded.
        modelLoaded(ModelStatus)
        modelFailed(str, str): one-line reason and its kind, "backend" (the backend cannot run
            here or cannot load the model) or "model" (the model folder); frames are shown
            without poses until a model loads.
        failed(str): a runtime error (inference, recording); the app keeps running.
        sourceEnded(dict): the source ended or failed: {"label", "error" (str|None), "note" (str|None,
            e.g. damaged frames skipped), "captured", "dropped", "processed"}.
        recordingChanged(bool, str): recording on/off and a message (file names, frames written).
    """

    frameReady = pyqtSignal()
    modelLoading = pyqtSignal(str)
    modelLoaded = pyqtSignal(object)
    modelFailed = pyqtSignal(str, str)
    failed = pyqtSignal(str)
    sourceEnded = pyqtSignal(object)
    recordingChanged = pyqtSignal(bool, str)

    def __init__(self, slot: LatestFrameSlot, pipeline: Mapping[str, Any], show_boxes: bool = False,
                 hide_unsure: bool = True, parent=None):
        """``pipeline``: the pipeline settings (keys of :attr:`engine.config.PipelineConfig.SETTINGS`,
        the app's conventions: :meth:`app.settings.AppSettings.pipeline_settings`); ValueError for
        an unknown key or a bad value."""
        super().__init__(parent)
        self.slot = slot
        self._lock = threading.Lock()
        self._settings = dict(pipeline)
        self._config = PipelineConfig.from_settings(self._settings)
        self._view = {"show_boxes": bool(show_boxes), "hide_unsure": bool(hide_unsure)}
        self._loaded: PipelineConfig | None = None   # the config of the last load (failed or not)
        self._reload = True
        self._reset = False
        self._source_label = ""
        self._record_request: tuple | None = None
        self._stop_event = threading.Event()
        self._display: DisplayFrame | None = None
        self._display_pending = False
        self.pipeline = None
        self.model: ModelStatus | None = None
        self.recorder = None
        self._record_paths: tuple[Path, Path | None] | None = None
        self._record_frames = 0
        self._processed = 0
        self._ended_generation = -1
        self._last_error: str | None = None
        self.live = None   # engine.streaming.LiveOutputs: the WebSocket stream and OSC (set_live)
        # Set while no model (re)load is pending: file sources start playing only then, so that
        # a video does not run (and drop frames) while the model loads.
        self.ready = threading.Event()

    # -- called from the GUI thread ----------------------------------------------------
    def configure(self, **changes) -> None:
        """Change settings, applied before the next frame: the pipeline's (the keys of
        :attr:`engine.config.PipelineConfig.SETTINGS`, the app's conventions, e.g. ``max_persons``
        0 for everyone; those outside :data:`engine.config.LIVE_OPTIONS`, such as ``rotate`` or
        ``track_by_body``, rebuild the pipeline) and the drawing's, ``show_boxes`` and
        ``hide_unsure`` (joints below the confidence threshold not drawn).

        Raises:
            KeyError: a setting that does not exist (nothing is changed).
            ValueError: a value the pipeline refuses (nothing is changed).
        """
        with self._lock:
            unknown = [k for k in changes if k not in self._view and k not in PipelineConfig.SETTINGS]
            if unknown:
                raise KeyError(f"unknown worker setting {unknown[0]!r}")
            settings = dict(self._settings, **{k: v for k, v in changes.items() if k not in self._view})
            config = PipelineConfig.from_settings(settings)
            if config.needs_rebuild(self._config):
                self.ready.clear()
            self._settings, self._config = settings, config
            self._view.update({k: v for k, v in changes.items() if k in self._view})
        self.slot.wake()

    def reload_model(self) -> None:
        """Load the model again (e.g. after the user fixed a missing model folder)."""
        with self._lock:
            self._reload = True
            self.ready.clear()
        self.slot.wake()

    def new_source(self, label: str) -> None:
        """A new source starts: reset tracks and smoothing, and finish any recording."""
        with self._lock:
            self._reset = True
            self._source_label = label
            self._processed = 0
        self.slot.wake()

    def start_recording(self, video_path: str | Path, keypoints_path: str | Path | None) -> None:
        """Record the annotated frames to ``video_path`` and the poses to ``keypoints_path``."""
        with self._lock:
            self._record_request = ("start", Path(video_path), None if keypoints_path is None else Path(keypoints_path))
        self.slot.wake()

    def stop_recording(self) -> None:
        """Finish the recording (closes and flushes both files)."""
        with self._lock:
            self._record_request = ("stop",)
        self.slot.wake()

    def set_live(self, live) -> None:
        """Publish every processed frame to ``live`` (an :class:`engine.streaming.LiveOutputs`,
        or None), from the next frame on."""
        self.live = live
        self.slot.wake()

    def take_display(self) -> DisplayFrame | None:
        """The newest annotated frame (None if there is none new)."""
        with self._lock:
            d, self._display = self._display, None
            self._display_pending = False
            return d

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Stop the thread (finishing any recording, releasing the model); True if it ended."""
        self._stop_event.set()
        self.slot.wake()
        return self.wait(timeout_ms) if self.isRunning() else True

    # -- the worker thread --------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self._apply_requests()
                frame = self.slot.take(timeout=0.05)
                if self._stop_event.is_set():
                    break
                if frame is None:
                    self._check_end()
                    continue
                self._process(frame)
        finally:
            self._finish_recording()
            if self.pipeline is not None:
                try:
                    self.pipeline.close()
                except Exception:
                    log.exception("closing the pipeline failed")
                self.pipeline = None

    def _apply_requests(self) -> None:
        with self._lock:
            config = self._config
            reload, self._reload = self._reload, False
            reset, self._reset = self._reset, False
            record, self._record_request = self._record_request, None
        if reload or self._loaded is None or config.needs_rebuild(self._loaded):
            self._load(config)
        with self._lock:
            if not self._reload and not self._config.needs_rebuild(self._loaded):
                self.ready.set()
        if self.pipeline is not None:   # the live options; stages beyond the model's: all of them
            s = self.pipeline.num_stages
            self.pipeline.apply(config.replace(stages=None if config.stages is None else min(config.stages, s)))
        if reset:
            self._finish_recording()
            if self.pipeline is not None:
                self.pipeline.reset()
            if self.live is not None:   # a source (re)starts: the stream starts anew, header first
                self.live.restart()
        if record is not None:
            if record[0] == "stop":
                self._finish_recording()
            else:
                self._finish_recording()
                if self.pipeline is None:
                    self.recordingChanged.emit(False, "cannot record: no model is loaded")
                else:
                    self._record_paths = (record[1], record[2])
                    self._record_frames = 0
                    # the recorder opens on the next frame, when the frame size is known
                    self.recordingChanged.emit(True, f"recording to {record[1]}")

    def _load(self, config: PipelineConfig) -> None:
        """Build the pipeline of ``config`` (its stages set afterwards, within the model's)."""
        self._loaded = config
        weights = str(config.weights)
        if self.pipeline is not None:
            self._finish_recording()
            try:
                self.pipeline.close()
            except Exception:
                log.exception("closing the pipeline failed")
            self.pipeline = None
            self.model = None
        self.modelLoading.emit(weights)
        pipeline = None
        try:
            from deeppose.engine.pipeline import PosePipeline
            t = time.perf_counter()
            pipeline = PosePipeline(config.replace(stages=None))
            pipeline.warmup()   # first-call costs now, not on the first frames shown
            log.info("loaded %s on %s in %.1f s", weights, pipeline.backend_name, time.perf_counter() - t)
        except Exception as e:  # ModelError, a backend that is not installed, a broken detector model...
            log.info("model load failed: %s", e)
            if pipeline is not None:  # built, but its warm-up failed: release its detector
                pipeline.close()
            from deeppose.engine.backends import BackendError
            self.modelFailed.emit(one_line(e), "backend" if isinstance(e, BackendError) else "model")
            return
        self.pipeline = pipeline
        name = pipeline.info.manifest.name or Path(weights).name
        desc = pipeline.backend_description
        self.model = ModelStatus(str(weights), desc.split(" [")[0], desc, pipeline.num_stages, pipeline.skeleton.name,
                                 str(name))
        self.modelLoaded.emit(self.model)

    def _process(self, frame) -> None:
        from deeppose.engine.frames import FrameLoop, RecordingFailed

        with self._lock:
            show_boxes = bool(self._view["show_boxes"])
            min_confidence = None if self._view["hide_unsure"] else 0.0
        image = frame.image
        result = None
        if self.pipeline is not None:
            if self._record_paths is not None and self.recorder is None:
                self._open_recorder(image, frame.fps)
            live = self.live
            if live is not None:
                live.set_source(source=self._source_label, fps=round(float(frame.fps), 3))
            try:
                result = FrameLoop(self.pipeline, self.recorder, draw_boxes=show_boxes, live=live,
                                   min_confidence=min_confidence).step(
                    image, frame.timestamp, frame.index)
                self._last_error = None
                if self.recorder is not None:
                    self._record_frames += 1
            except RecordingFailed as e:
                result = e.result
                log.error("recording failed: %s", e)
                self.failed.emit(f"recording failed: {one_line(e.__cause__ or e)}")
                self._finish_recording(failed=True)
            except Exception as e:
                msg = f"inference failed: {one_line(e)}"
                if msg != self._last_error:   # report once, not once per frame
                    log.exception("inference failed")
                    self.failed.emit(msg)
                    self._last_error = msg
                result = None
        self._processed += 1
        h, w = image.shape[:2]
        display = DisplayFrame(bgr_to_qimage(image), (w, h), frame.index, frame.captured, result, self.slot.dropped,
                               self.slot.captured, self._processed, self.pipeline.backend_name if self.pipeline else "",
                               frame.fps, self._record_paths is not None,
                               self.pipeline.skeleton if self.pipeline is not None else None)
        with self._lock:
            self._display = display
            notify = not self._display_pending
            self._display_pending = True
        if notify:
            self.frameReady.emit()

    def _check_end(self) -> None:
        gen = self.slot.generation
        if self.slot.ended and gen != self._ended_generation and not self.slot.pending():
            self._ended_generation = gen
            self._finish_recording()
            self.sourceEnded.emit({"label": self._source_label, "error": self.slot.error, "note": self.slot.note,
                                   "captured": self.slot.captured,
                                   "dropped": self.slot.dropped, "processed": self._processed})

    def _open_recorder(self, image: np.ndarray, fps: float) -> None:
        """Open the recording requested, now that the frame size is known."""
        try:
            from deeppose.engine.recording import PoseRecorder
            video, keypoints = self._record_paths
            video.parent.mkdir(parents=True, exist_ok=True)
            h, w = image.shape[:2]
            # Only processed frames are recorded: time them by their timestamps so the file
            # plays at real speed even when frames were dropped.
            self.recorder = PoseRecorder(video, keypoints, fps, (w, h), self.pipeline.skeleton, timestamps=True)
        except Exception as e:
            log.exception("recording failed")
            self.failed.emit(f"recording failed: {one_line(e)}")
            self._finish_recording(failed=True)

    def _finish_recording(self, failed: bool = False) -> None:
        if self._record_paths is None:
            return
        video, keypoints = self._record_paths
        rec, self.recorder, self._record_paths = self.recorder, None, None
        msg = ""
        if rec is not None:
            try:
                rec.close()
            except Exception as e:
                self.failed.emit(f"finishing the recording failed: {one_line(e)}")
                failed = True
            if not failed:
                names = video.name + (f" + {keypoints.name}" if keypoints else "")
                msg = f"saved {self._record_frames} frames to {names} in {video.parent}"
        elif not failed:
            msg = "recording stopped before any frame was written"
        self.recordingChanged.emit(False, msg)
