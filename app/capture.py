"""Frame capture for the app: a camera or a video file read on its own thread.

The capture thread never queues frames. It writes each frame it reads into a
:class:`LatestFrameSlot`, which holds only the newest one: a frame that the inference worker
did not take before the next one arrived is dropped (and counted). A video file is paced at its
own frame rate, so it plays in real time when inference keeps up and drops frames when not.

Nothing here imports Qt; the inference worker (app/worker.py) reports what the slot says.
"""
from __future__ import annotations

import glob
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeppose.engine.frames import SourceError, open_source, quiet_opencv

log = logging.getLogger(__name__)

# A camera that delivers no frame for this long is reported as lost (unplugged).
CAMERA_TIMEOUT_S = 2.0
# A file plays at its frames' own times, but never pauses longer than this between two frames
# (a broken timestamp would otherwise stall playback).
MAX_FILE_PAUSE_S = 2.0


@dataclass(frozen=True)
class Source:
    """What to capture: a camera index or a video file path."""

    kind: str            # "camera" | "file"
    value: int | str     # camera index, or file path

    @property
    def label(self) -> str:
        return f"camera {self.value}" if self.kind == "camera" else Path(str(self.value)).name

    @staticmethod
    def parse(text: str | int) -> "Source":
        """``"0"`` or ``0`` -> camera 0; anything else -> a video file path."""
        s = str(text).strip()
        if s.isdigit():
            return Source("camera", int(s))
        return Source("file", s)


@dataclass
class Frame:
    """One captured frame.

    Attributes:
        image: (H, W, 3) uint8 BGR pixels.
        index: 0-based frame number in the source (a file's damaged frames are skipped, not numbered).
        timestamp: source time in seconds (file: the frame's presentation time; camera: since
            capture started).
        captured: ``time.perf_counter()`` when the frame was read (for capture-to-display latency).
        fps: the source's nominal frame rate.
    """

    image: np.ndarray
    index: int
    timestamp: float
    captured: float
    fps: float


class LatestFrameSlot:
    """A one-frame mailbox between the capture thread and the inference worker.

    ``put`` replaces the frame held (counting the replaced one as dropped); ``take`` removes and
    returns the newest frame. The slot also carries the end of the source (``ended``) and a
    one-line ``error`` or, for a file that ended normally, a one-line ``note`` (e.g. damaged
    frames skipped). Each capture run gets a generation number from :meth:`reset`; frames and
    events of an older generation (a capture thread that is still stopping) are ignored.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._generation = 0
        self.dropped = 0
        self.captured = 0
        self.ended = False
        self.error: str | None = None
        self.note: str | None = None
        self.source_fps = 0.0

    def reset(self) -> int:
        """Forget everything (a new source) and return the new generation number."""
        with self._cond:
            self._generation += 1
            self._frame = None
            self.dropped = 0
            self.captured = 0
            self.ended = False
            self.error = None
            self.note = None
            self.source_fps = 0.0
            self._cond.notify_all()
            return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def put(self, frame: Frame, generation: int) -> None:
        with self._cond:
            if generation != self._generation:
                return
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self.captured += 1
            self._cond.notify_all()

    def finish(self, generation: int, error: str | None = None, note: str | None = None) -> None:
        """Mark the source as ended (``error`` None) or failed (a one-line message); ``note``:
        one line on how it ended (e.g. ``"17 unreadable frames skipped (damaged data)"``)."""
        with self._cond:
            if generation != self._generation:
                return
            self.ended = True
            self.error = error
            self.note = note
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        """The newest frame (removed from the slot), or None after ``timeout`` seconds or at the end."""
        with self._cond:
            if self._frame is None and not self.ended:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def pending(self) -> bool:
        with self._cond:
            return self._frame is not None

    def wake(self) -> None:
        """Wake a waiting :meth:`take` (used when the worker is asked to stop)."""
        with self._cond:
            self._cond.notify_all()


def list_cameras(max_index: int = 4) -> list[int]:
    """Indices of the cameras that open and deliver a frame.

    On Linux only the indices of existing ``/dev/video*`` nodes are probed (fast when there is
    no camera); elsewhere indices 0..max_index-1.
    """
    quiet_opencv()
    import cv2

    if sys.platform.startswith("linux"):
        nodes = sorted(int(m.group(1)) for p in glob.glob("/dev/video*") if (m := re.fullmatch(r"/dev/video(\d+)", p)))
        candidates = [i for i in nodes if i < 64]
    else:
        candidates = list(range(max_index))
    found = []
    for i in candidates:
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append(i)
        finally:
            cap.release()
    return found


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``slot`` until stopped, the file ends, or the camera is lost.

    Args:
        source: camera or file.
        slot: the newest-frame slot; this thread uses the generation given.
        generation: from ``slot.reset()``.
        realtime: pace a file at its own frame rate (False reads as fast as decoding allows,
            still overwriting the slot; used by nothing in the app but handy for benchmarks).
        ready: a file starts playing only once this event is set (the worker sets it when no
            model load is pending), so a video does not run while the model loads.
    """

    def __init__(self, source: Source, slot: LatestFrameSlot, generation: int, realtime: bool = True,
                 ready: threading.Event | None = None):
        super().__init__(name=f"capture-{source.label}", daemon=True)
        self.source = source
        self.slot = slot
        self.generation = generation
        self.realtime = realtime
        self.ready = ready
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self) -> None:
        try:
            opened = open_source(self.source.value)
        except SourceError as e:
            self.slot.finish(self.generation, str(e))
            return
        except Exception as e:  # anything else from OpenCV: still one line, never a crash
            self.slot.finish(self.generation, f"cannot open {self.source.label}: {e}")
            return
        self.slot.source_fps = opened.fps
        try:
            if self.source.kind == "file":
                self._run_file(opened)
            else:
                self._run_camera(opened.capture, opened.fps)
        except Exception as e:
            log.exception("capture failed")
            self.slot.finish(self.generation, f"{self.source.label}: capture failed: {e}")
        finally:
            opened.release()

    def _run_file(self, opened) -> None:
        if self.ready is not None:
            while not self.ready.wait(0.1):
                if self._stop_event.is_set():
                    return
        video, fps = opened.capture, opened.fps   # an engine.frames.VideoFile
        start = time.perf_counter() - opened.first_time   # the wall-clock time of source time 0
        index, previous = 0, opened.first_time
        item = (opened.first, opened.first_time)   # open_source read it (a file without one is refused there)
        while not self._stop_event.is_set():
            if index > 0:
                item = video.next_frame()   # damaged frames are skipped and counted
                if item is None:
                    self.slot.finish(self.generation, video.error and f"{self.source.label}: {video.error}",
                                     video.note)
                    return
            image, t = item
            if self.realtime:   # played at the frames' own times (variable frame rates too)
                start -= max(0.0, t - previous - MAX_FILE_PAUSE_S)
                previous = t
                delay = start + t - time.perf_counter()
                if delay > 0 and self._stop_event.wait(delay):
                    return
            self.slot.put(Frame(image, index, t, time.perf_counter(), fps), self.generation)
            index += 1

    def _run_camera(self, cap, fps: float) -> None:
        start = time.perf_counter()
        last_ok = start
        index = 0
        while not self._stop_event.is_set():
            ok, image = cap.read()
            now = time.perf_counter()
            if not ok or image is None:
                if now - last_ok > CAMERA_TIMEOUT_S:
                    self.slot.finish(self.generation, f"camera {self.source.value} stopped delivering frames "
                                                      "(unplugged or taken by another program)")
                    return
                self._stop_event.wait(0.05)
                continue
            last_ok = now
            self.slot.put(Frame(image, index, now - start, now, fps), self.generation)
            index += 1
