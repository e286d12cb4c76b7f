"""Frame sources and the frame loop, shared by the ``video`` command (engine/video_cli.py) and
the app (app/capture.py, app/worker.py).

- :func:`open_source`: opens a camera or a video file with OpenCV (one set of checks, one
  frame-rate guard, one exception type).
- :class:`FrameReader`: decodes a source on its own thread into a bounded queue, so that
  decoding overlaps inference (the video command; the app's capture thread paces a file in
  real time instead).
- :class:`FrameLoop`: one frame through the pose path: ``PosePipeline.process`` -> drawing
  -> live outputs (:class:`engine.streaming.LiveOutputs`) -> recording.

Module-level imports stay light (numpy and the standard library): ``main.py --help`` imports
the video command, which imports this module.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Frame rates outside (0, MAX_FPS] in a file's header are taken as unknown and replaced by
# DEFAULT_FPS (broken headers say 0, NaN or 90000).
DEFAULT_FPS = 30.0
MAX_FPS = 1000.0


class SourceError(ValueError):
    """A camera or video file that cannot be opened or read (one-line message)."""


@dataclass
class OpenedSource:
    """An opened camera or video file.

    Attributes:
        capture: the ``cv2.VideoCapture`` (release it, or use :meth:`release`).
        first: the first frame, (H, W, 3) uint8 BGR, already read (files only; None for a
            camera, whose first frame is read by the caller).
        fps: frame rate, frames per second (the header's, or :data:`DEFAULT_FPS`).
        size: (width, height) in pixels of the first frame ((0, 0) for a camera).
        count: frames announced by the header, 0 when unknown (cameras).
    """

    capture: object
    first: np.ndarray | None
    fps: float
    size: tuple[int, int]
    count: int

    def release(self) -> None:
        self.capture.release()


def quiet_opencv() -> None:
    """Silence OpenCV's warnings (cameras that are not there, probing of file formats)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_VIDEOIO_PRIORITY_OBSENSOR", "0")
    try:
        import cv2
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # older/newer cv2 without the logging module
        pass


def open_source(source: int | str | Path) -> OpenedSource:
    """Open a camera (an int index) or a video file (a path) with OpenCV.

    A file must exist, be readable, not be a still image (FFmpeg would open one as a
    one-frame video) and have a decodable first frame, which is read here.

    Raises:
        SourceError: one line saying why the camera or file cannot be used; nothing is left
            open then.
    """
    quiet_opencv()
    import cv2

    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {source} cannot be opened (not connected, or in use by another program)")
        return OpenedSource(cap, None, _fps(cap), (0, 0), 0)
    path = Path(source)
    if not path.exists():
        raise SourceError(f"video file not found: {path}")
    if not path.is_file():
        raise SourceError(f"input video {path} is not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read input video {path}: permission denied")
    if cv2.haveImageReader(str(path)):
        raise SourceError(f"{path} is an image, not a video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot read {path} as a video")
    ok, frame = cap.read()
    if not ok or frame is None or frame.ndim != 3:
        cap.release()
        raise SourceError(f"cannot read {path} as a video: no decodable frame")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    h, w = frame.shape[:2]
    return OpenedSource(cap, frame, _fps(cap), (w, h), max(count, 0))


def _fps(cap) -> float:
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or fps != fps or fps <= 0 or fps > MAX_FPS:
        return DEFAULT_FPS
    return float(fps)


_END = object()


class FrameReader:
    """Decodes an opened file on a background thread into a bounded queue.

    OpenCV releases the GIL while it decodes, so decoding overlaps the caller's inference;
    at most ``queue_size`` decoded frames wait (memory stays bounded: a 1280x720 frame is
    2.6 MiB). Iterate to get ``(index, frame)`` pairs in order, the opened first frame
    included; a read error ends the iteration like the end of the file.

    Args:
        opened: from :func:`open_source` (a file: its first frame is yielded first).
        max_frames: stop after this many frames (None: the whole file).
        queue_size: decoded frames that may wait.
    """

    def __init__(self, opened: OpenedSource, max_frames: int | None = None, queue_size: int = 4):
        self.opened = opened
        self.max_frames = max_frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self._stop = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._decode, name="decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        index = 0
        frame = self.opened.first
        try:
            while frame is not None and not self._stop.is_set():
                if not self._put((index, frame)):
                    return
                index += 1
                if self.max_frames and index >= self.max_frames:
                    break
                ok, frame = self.opened.capture.read()
                if not ok:
                    frame = None
        except Exception as e:  # a decoder failure ends the frames; the caller reports it
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self._put(_END)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def close(self) -> None:
        """Stop decoding and release the capture (idempotent)."""
        self._stop.set()
        self._thread.join(5)
        self.opened.release()


class RecordingFailed(RuntimeError):
    """Raised by :meth:`FrameLoop.step` when the frame was processed and drawn but could not be
    recorded; ``result`` is the frame's result, ``__cause__`` the recorder's error."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class FrameLoop:
    """One frame through the pose path: ``pipeline.process`` -> :func:`engine.drawing.draw_poses`
    -> ``recorder.write``, as the video command and the app's worker run it.

    Args:
        pipeline: an :class:`engine.pipeline.PosePipeline`.
        recorder: an :class:`engine.recording.PoseRecorder`, or None (may be set later).
        draw_boxes: also draw each person's b0 and face box.
        live: an :class:`engine.streaming.LiveOutputs` (WebSocket stream, OSC), or None; it
            gets every frame's result before the recorder, and never raises.
    """

    def __init__(self, pipeline, recorder=None, draw_boxes: bool = False, live=None):
        self.pipeline = pipeline
        self.recorder = recorder
        self.draw_boxes = bool(draw_boxes)
        self.live = live

    def step(self, image: np.ndarray, timestamp: float, index: int):
        """Process, draw (in place, on ``image``), publish to the live outputs and record one frame.

        Args:
            image: (H, W, 3) uint8 BGR frame; the skeletons are drawn into it.
            timestamp: source time of the frame, seconds.
            index: 0-based frame number in the source.
        Returns:
            the pipeline's :class:`engine.pipeline.FrameResult`.
        Raises:
            RecordingFailed: the recorder failed (the frame is processed and drawn).
            Exception: whatever the pipeline raises (nothing drawn or recorded then).
        """
        from .drawing import draw_poses

        result = self.pipeline.process(image, timestamp=timestamp, index=index)
        draw_poses(image, result, self.pipeline.skeleton, draw_boxes=self.draw_boxes)
        if self.live is not None:
            self.live.publish(result, self.pipeline.skeleton)
        if self.recorder is not None:
            try:
                self.recorder.write(image, result)
            except Exception as e:
                raise RecordingFailed(str(e).splitlines()[0] if str(e) else type(e).__name__, result) from e
        return result
