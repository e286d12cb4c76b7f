"""Frame sources and the frame loop, shared by the ``video`` command (engine/video_cli.py) and
the app (app/capture.py, app/worker.py).

- :func:`open_source`: opens a camera (OpenCV) or a video file (PyAV, :class:`VideoFile`) (one
  set of checks, one frame-rate guard, one exception type).
- :class:`VideoFile`: decodes a file with PyAV: each frame with its presentation time, resampled
  to square pixels when the file's pixels are not square, damaged frames skipped and counted.
- :class:`FrameReader`: decodes a file on its own thread into a bounded queue, so that
  decoding overlaps inference (the video command; the app's capture thread paces a file in
  real time instead).
- :class:`FrameLoop`: one frame through the pose path: ``PosePipeline.process`` -> drawing
  -> live outputs (:class:`engine.streaming.LiveOutputs`) -> recording.
- :class:`Lookahead`: holds a video file's last few frames back, so that a person is drawn from
  his first frame, not from the one that confirmed him.

Module-level imports stay light (numpy and the standard library): ``main.py --help`` imports
the video command, which imports this module.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .constants import MIN_JOINT_CONFIDENCE

# Frame rates outside (0, MAX_FPS] in a file's header are taken as unknown and replaced by
# DEFAULT_FPS (broken headers say 0, NaN or 90000).
DEFAULT_FPS = 30.0
MAX_FPS = 1000.0
# A file is given up after this many unreadable frames in a row (damaged data: each is skipped
# and counted, and decoding goes on with the next one).
MAX_UNREADABLE_RUN = 100

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A camera or video file that cannot be opened or read (one-line message)."""


@dataclass
class OpenedSource:
    """An opened camera or video file.

    Attributes:
        capture: a camera's ``cv2.VideoCapture``, or a file's :class:`VideoFile` (release it,
            or use :meth:`release`).
        first: the first frame, (H, W, 3) uint8 BGR, already read (files only; None for a
            camera, whose first frame is read by the caller).
        fps: nominal frame rate, frames per second (the header's average, or
            :data:`DEFAULT_FPS`); a file's frames are timed by their own timestamps.
        size: (width, height) in pixels of the frames delivered ((0, 0) for a camera): for a
            file, its display geometry (square pixels, see :class:`VideoFile`).
        count: frames announced by the header, 0 when unknown (cameras).
        first_time: source time of ``first``, seconds (0.0 for a camera).
    """

    capture: object
    first: np.ndarray | None
    fps: float
    size: tuple[int, int]
    count: int
    first_time: float = 0.0

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
    """Open a camera (an int index, with OpenCV) or a video file (a path, with PyAV).

    A file must exist, be readable, not be a still image (FFmpeg would open one as a
    one-frame video) and have a decodable frame, the first of which is read here.

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
    video = VideoFile(path)
    try:
        first = video.next_frame()
    except BaseException:
        video.release()
        raise
    if first is None:
        video.release()
        raise SourceError(f"cannot read {path} as a video: no decodable frame")
    return OpenedSource(video, first[0], video.fps, video.size, video.count, first[1])


def _fps(cap) -> float:
    import cv2

    return _valid_fps(cap.get(cv2.CAP_PROP_FPS))


def _valid_fps(fps) -> float:
    """``fps`` as a float, or :data:`DEFAULT_FPS` when it is missing or outside (0, MAX_FPS]."""
    try:
        fps = float(fps or 0)
    except (TypeError, ValueError, ZeroDivisionError):
        return DEFAULT_FPS
    if not fps or fps != fps or fps <= 0 or fps > MAX_FPS:
        return DEFAULT_FPS
    return fps


def display_size(stored: tuple[int, int], sample_aspect: Fraction) -> tuple[int, int]:
    """(width, height) with square pixels of a frame stored as ``stored`` (width, height) pixels
    of aspect ``sample_aspect`` (width / height of one pixel).

    Pixels wider than tall widen the frame, taller than wide heighten it (no stored pixel is
    lost); the stretched side is rounded to an even number (H.264 4:2:0 wants even sides).
    Example: 960x720 with sample aspect 4:3 -> 1280x720 (16:9).
    """
    w, h = int(stored[0]), int(stored[1])
    if sample_aspect == 1:
        return w, h
    if sample_aspect > 1:
        return max(2, 2 * round(w * sample_aspect / 2)), h
    return w, max(2, 2 * round(h / sample_aspect / 2))


class VideoFile:
    """A video file decoded with PyAV (FFmpeg), frame by frame.

    - Time: each frame comes with its presentation time (pts x time base), in seconds since the
      start of the video stream, so variable-frame-rate files keep their timing.
    - Geometry: a file whose pixels are not square (sample aspect ratio != 1, e.g. 960x720
      stored, 4:3 pixels, shown as 1280x720) is resampled right after decoding to its display
      geometry (:func:`display_size`, bilinear), so every frame delivered has square pixels and
      :attr:`size` (width, height).
    - Damage: a packet that fails to decode is skipped and counted (:attr:`unreadable`), and
      decoding goes on with the next one; after ``max_unreadable_run`` in a row the file is
      given up (:attr:`error` says so, :meth:`next_frame` returns None). FFmpeg's messages do
      not reach the terminal (PyAV's FFmpeg logging stays off); each skipped packet is logged
      on this module's logger at DEBUG level with FFmpeg's error.

    Args:
        path: the video file.
        max_unreadable_run: unreadable frames in a row after which the file is given up
            (default :data:`MAX_UNREADABLE_RUN`).
    Raises:
        SourceError: the file cannot be opened as a video or has no video stream.

    Attributes:
        fps: nominal frame rate (the stream's average, else a guess, else :data:`DEFAULT_FPS`).
        count: frames announced by the header (0: unknown).
        stored_size: (width, height) of the coded frames, pixels.
        sample_aspect: width / height of one stored pixel (1 when unknown).
        size: (width, height) of the frames delivered (display geometry), pixels.
        time_base: the stream's time base, seconds per pts unit (a timing as fine as the file's).
        unreadable: frames skipped so far because their data could not be decoded.
        error: one line when the file was given up, else None.
    """

    def __init__(self, path: str | Path, max_unreadable_run: int | None = None):
        import av

        self.path = Path(path)
        self.max_unreadable_run = max(1, int(max_unreadable_run or MAX_UNREADABLE_RUN))
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or _one_line(e)
            raise SourceError(f"cannot read {self.path} as a video ({reason})") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"cannot read {self.path} as a video: it has no video stream")
        stream = self._container.streams.video[0]
        self._stream = stream
        self.fps = _valid_fps(stream.average_rate or stream.guessed_rate)
        self.count = max(int(stream.frames or 0), 0)
        self.time_base = stream.time_base or Fraction(1, 90000)
        self._start = stream.start_time   # pts of the stream's start (None: the first frame's)
        cc = stream.codec_context
        self.stored_size = (int(cc.width), int(cc.height))
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        self.sample_aspect = Fraction(sar) if sar and 0.1 <= sar <= 10 else Fraction(1)
        self.size = display_size(self.stored_size, self.sample_aspect)
        self.unreadable = 0
        self.error: str | None = None
        self._run = 0
        self._last_time: float | None = None
        self._pending: list = []
        self._packets = None
        self._ended = False

    @property
    def note(self) -> str | None:
        """One line on the frames skipped (``"17 unreadable frames skipped (damaged data)"``), or None."""
        if not self.unreadable:
            return None
        return f"{self.unreadable} unreadable frame{'s' if self.unreadable != 1 else ''} skipped (damaged data)"

    def next_frame(self) -> tuple[np.ndarray, float] | None:
        """The next decodable frame: ((H, W, 3) uint8 BGR of :attr:`size`, its time in seconds),
        or None at the end of the file or once it is given up (:attr:`error`)."""
        while not self._pending:
            if self._ended:
                return None
            self._decode_next_packet()
        frame = self._pending.pop(0)
        return self._to_bgr(frame), self._time(frame)

    def _decode_next_packet(self) -> None:
        import av

        if self._packets is None:
            self._packets = self._container.demux(self._stream)
        try:
            packet = next(self._packets)
        except StopIteration:
            self._ended = True
            return
        except av.FFmpegError as e:   # a demuxer error: go on reading after it (bounded below)
            self._packets = None
            self._skip(None, e)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            if packet.size:
                self._skip(packet, e)
            return
        self._run = 0
        self._pending.extend(frames)

    def _skip(self, packet, error: Exception) -> None:
        self.unreadable += 1
        self._run += 1
        where = "?" if packet is None or packet.pts is None else f"{self._seconds(packet.pts):.3f} s"
        log.debug("%s: skipped an unreadable frame at %s: %s", self.path, where, _one_line(error))
        if self._run >= self.max_unreadable_run:
            self.error = (f"gave up after {self._run} unreadable frames in a row (damaged data"
                          + (f", near {where})" if packet is not None else ")"))
            self._ended = True

    def _seconds(self, pts: int) -> float:
        start = self._start if self._start is not None else 0
        return float((pts - start) * self.time_base)

    def _time(self, frame) -> float:
        pts = frame.pts
        if pts is None:   # no timestamp: one nominal frame after the previous one
            t = 0.0 if self._last_time is None else self._last_time + 1.0 / self.fps
        else:
            if self._start is None:
                self._start = pts
            t = self._seconds(pts)
        self._last_time = t
        return t

    def _to_bgr(self, frame) -> np.ndarray:
        w, h = self.size
        if (frame.width, frame.height) == (w, h):
            image = frame.to_ndarray(format="bgr24")
        else:   # non-square pixels (or a size change mid-stream): to the display geometry
            image = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="BILINEAR")
        return np.ascontiguousarray(image)

    def release(self) -> None:
        """Close the file (idempotent)."""
        self._pending = []
        self._ended = True
        self._container.close()


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__


_END = object()


class FrameReader:
    """Decodes an opened file on a background thread into a bounded queue.

    PyAV releases the GIL while it decodes and converts, so decoding overlaps the caller's
    inference; at most ``queue_size`` decoded frames wait (memory stays bounded: a 1280x720
    frame is 2.6 MiB). Iterate to get ``(index, frame, timestamp)`` in order, the opened first
    frame included: ``index`` counts the frames delivered (0, 1, 2, ...), ``frame`` is (H, W, 3)
    uint8 BGR of ``opened.size``, ``timestamp`` its source time in seconds (the decoder's
    presentation time; see :class:`VideoFile`). Damaged frames are skipped and counted
    (:attr:`unreadable`, :attr:`note`); a decoder failure, or a file given up after too many
    damaged frames in a row, ends the iteration and is kept in :attr:`error`.

    Args:
        opened: a file from :func:`open_source` (its first frame is yielded first).
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

    @property
    def unreadable(self) -> int:
        """Frames skipped so far because their data could not be decoded."""
        return int(getattr(self.opened.capture, "unreadable", 0))

    @property
    def note(self) -> str | None:
        """One line on the unreadable frames skipped (see :attr:`VideoFile.note`), or None."""
        return getattr(self.opened.capture, "note", None)

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
        item = None if self.opened.first is None else (self.opened.first, self.opened.first_time)
        try:
            while item is not None and not self._stop.is_set():
                if not self._put((index, item[0], item[1])):
                    return
                index += 1
                if self.max_frames and index >= self.max_frames:
                    break
                item = self.opened.capture.next_frame()
            if item is None and getattr(self.opened.capture, "error", None):
                self.error = self.opened.capture.error
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
        """Stop decoding and release the file (idempotent)."""
        self._stop.set()
        self._thread.join(5)
        self.opened.release()


class RecordingFailed(RuntimeError):
    """Raised by :meth:`FrameLoop.step` (or :meth:`FrameLoop.flush`) when a frame was processed and
    drawn but could not be recorded; ``result`` is that frame's result (with a lookahead, an
    earlier frame's than the one just processed), ``__cause__`` the recorder's error."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class Lookahead:
    """Holds the last ``n`` frames back, so that a person confirmed in a later frame is also
    drawn in the held frames where he was being confirmed: his estimates there
    (:attr:`engine.pipeline.FrameResult.tentative`) move into their ``persons``. A video file
    so shows each person from his first frame, not from the ``confirm_hits``-th; a live source
    cannot wait and uses none.

    Args:
        n: frames held back (0: each is released at once); ``PosePipeline.lookahead_frames`` is
            enough for every confirmation.
    """

    def __init__(self, n: int):
        from collections import deque

        self.n = max(0, int(n))
        self._held: deque = deque()   # (item, result), oldest first

    def push(self, item, result) -> list:
        """Take the ``result`` (:class:`engine.pipeline.FrameResult`) of the next frame with the
        caller's ``item`` (e.g. the frame's image); return the (item, result) pairs released,
        oldest first: the frame ``n`` frames back, once ``n`` are held."""
        confirmed = {p.track_id for p in result.persons}
        for _, earlier in self._held:
            moved = [p for p in earlier.tentative if p.track_id in confirmed]
            if moved:   # a frame with a person in it has no full-frame fallback figure (id 0)
                kept = [p for p in earlier.persons if p.b0_source != "frame"]
                earlier.persons = sorted(kept + moved, key=lambda p: p.track_id)
                earlier.tentative = [p for p in earlier.tentative if p.track_id not in confirmed]
        self._held.append((item, result))
        out = []
        while len(self._held) > self.n:
            out.append(self._held.popleft())
        return out

    def flush(self) -> list:
        """Release every held (item, result), oldest first (the end of the source)."""
        out = list(self._held)
        self._held.clear()
        return out


def process_clip(pipeline, frames, fps: float = 30.0) -> list:
    """Run ``pipeline`` (:class:`engine.pipeline.PosePipeline`) over a clip's ``frames`` ((H, W, 3)
    uint8 BGR images, frame i at time i / ``fps`` seconds) as the video command does, persons
    drawn from their first frame (:class:`Lookahead`); returns every frame's
    :class:`engine.pipeline.FrameResult`, in order (the evaluation tools score these)."""
    look = Lookahead(pipeline.lookahead_frames)
    out = []
    for i, frame in enumerate(frames):
        out += [r for _, r in look.push(None, pipeline.process(frame, i / fps, i))]
    return out + [r for _, r in look.flush()]


class FrameLoop:
    """One frame through the pose path: ``pipeline.process`` -> :func:`engine.drawing.draw_poses`
    -> ``recorder.write``, as the video command and the app's worker run it.

    With ``lookahead`` n > 0 (video files: the video command), each frame is drawn and recorded
    n frames later, with the persons confirmed meanwhile (:class:`Lookahead`). A live source (the
    app) uses 0. Call :meth:`flush` at the end (also after an interruption or a failure) to draw
    and record the frames still held.

    Args:
        pipeline: an :class:`engine.pipeline.PosePipeline`.
        recorder: an :class:`engine.recording.PoseRecorder`, or None (may be set later).
        draw_boxes: also draw each person's b0 and face box.
        min_confidence: joints less sure than this are not drawn (see
            :data:`engine.constants.MIN_JOINT_CONFIDENCE`, the default; 0 draws every joint).
        live: an :class:`engine.streaming.LiveOutputs` (WebSocket stream, OSC), or None; it
            gets every frame's result before the recorder, and never raises.
        lookahead: frames held back (0: none; ``pipeline.lookahead_frames`` is enough for
            every confirmation).

    Attributes:
        people: the number of persons drawn in each frame written so far.

    Once a frame fails to be drawn or recorded, no later frame is written (the output holds the
    frames before it, with no gap): :meth:`step` and :meth:`flush` raise again.
    """

    def __init__(self, pipeline, recorder=None, draw_boxes: bool = False, live=None, min_confidence: float | None = None,
                 lookahead: int = 0):
        self.pipeline = pipeline
        self.recorder = recorder
        self.draw_boxes = bool(draw_boxes)
        self.min_confidence = MIN_JOINT_CONFIDENCE if min_confidence is None else float(min_confidence)
        self.live = live
        self._lookahead = Lookahead(lookahead)
        self.people: list[int] = []
        self._failed: BaseException | None = None   # the first failure to write a frame

    def step(self, image: np.ndarray, timestamp: float, index: int):
        """Process one frame; draw (in place, on ``image``), publish to the live outputs and
        record it, or with ``lookahead`` the frame that many frames back.

        Args:
            image: (H, W, 3) uint8 BGR frame; the skeletons are drawn into it (kept, not copied,
                while held).
            timestamp: source time of the frame, seconds (a file's presentation time).
            index: 0-based number of the frame among those delivered (a file's damaged,
                unreadable frames are skipped and not numbered).
        Returns:
            the pipeline's :class:`engine.pipeline.FrameResult` of this frame (with
            ``lookahead``, persons confirmed later are added to its ``persons`` before it is
            written).
        Raises:
            RecordingFailed: the recorder failed (the frame is processed and drawn).
            Exception: whatever the pipeline raises (nothing drawn or recorded then), or drawing
                raised for a held frame.
        """
        result = self.pipeline.process(image, timestamp=timestamp, index=index)
        for held in self._lookahead.push(image, result):
            self._write(*held)
        return result

    def flush(self) -> None:
        """Draw, publish and record the frames still held (``lookahead``), oldest first; after a
        failure to write one, nothing. Raises: RecordingFailed, as :meth:`step`."""
        for held in self._lookahead.flush():
            self._write(*held)

    def _write(self, image: np.ndarray, result) -> None:
        from .drawing import draw_poses

        if self._failed is not None:   # a frame is missing: a later one would leave a gap
            raise self._failed
        try:
            draw_poses(image, result, self.pipeline.skeleton, draw_boxes=self.draw_boxes,
                       min_confidence=self.min_confidence)
            if self.live is not None:
                self.live.publish(result, self.pipeline.skeleton)
            if self.recorder is not None:
                try:
                    self.recorder.write(image, result)
                except Exception as e:
                    raise RecordingFailed(str(e).splitlines()[0] if str(e) else type(e).__name__, result) from e
        except Exception as e:
            self._failed = e
            raise
        self.people.append(len(result.persons))
