"""Recording poses: the annotated video and the keypoints file (JSON Lines or CSV).

Both survive an interrupted run:

- Video: H.264 in MP4 through PyAV (FFmpeg), written as a *fragmented* MP4 (one fragment per
  frame, the encoder in zero-latency mode, the file flushed after every packet), so that a
  file cut off at any moment -- Ctrl-C, a crash, even a killed process -- holds every frame
  encoded so far and plays. :meth:`AnnotatedVideoWriter.close` then rewrites it as a plain
  MP4 (stream copy, the index at the front) for the widest player support; if that fails
  the fragmented file stays. Without PyAV, OpenCV's 'mp4v' writer is used (that file is only
  playable once closed).
- Keypoints: one record per frame, flushed after every frame. With a video, a frame's record
  is written only once that frame is in the video file (the MP4 muxer holds the newest frame
  until the next one arrives), so the keypoints file never holds a frame the video lacks.
  After an abrupt stop (the process killed, the disk full) the video may hold up to
  :data:`MAX_EXTRA_VIDEO_FRAMES` frames more than the keypoints file has records; the JSON
  Lines header record says so (``frames_note``). A COCO keypoints file (``.coco.json``,
  :mod:`engine.coco`) is one JSON document, written when the recorder closes.
- Each output is locked while it is written (:class:`OutputLock`, a lock file beside it): a
  second run writing the same file is refused before it touches anything.

The keypoints file format is described in :mod:`engine.keypoints`.
"""
from __future__ import annotations

import functools
import logging
import math
import queue
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from .keypoints import KeypointsWriter, _r, open_keypoints_writer
from .outputs import OutputLock, RecordingError, replaced_atomically

__all__ = ["MAX_EXTRA_VIDEO_FRAMES", "AnnotatedVideoWriter", "OutputLock", "PoseRecorder", "RecordingError",
           "remux_to_plain_mp4"]

log = logging.getLogger(__name__)

# Most frames the video may hold beyond the keypoints records after an abrupt stop: the frame
# whose record was being written, and the frame the muxer held when writing the record failed.
MAX_EXTRA_VIDEO_FRAMES = 2


def _fps_fraction(fps: float) -> Fraction:
    """Frame rate as a fraction (29.97 -> 30000/1001), as MP4 time bases want."""
    fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
    for den in (1, 1001):
        num = round(fps * den)
        if abs(num / den - fps) < 1e-3:
            return Fraction(num, den)
    return Fraction(fps).limit_denominator(1000)


class AnnotatedVideoWriter:
    """Frames (H, W, 3) uint8 BGR in, a video file out, playable even if cut off mid-way.

    Args:
        path: output file (.mp4 recommended; the container follows the suffix with OpenCV).
        fps: frame rate, frames per second.
        frame_size: (width, height) in pixels; every frame must have this size.
        crf: H.264 constant rate factor (lower = better quality, larger file); 20.
        preset: x264 speed preset ("veryfast").
        finalize: on :meth:`close`, rewrite the fragmented MP4 as a plain one (see module doc).
        backend: "pyav" (H.264 fragmented MP4; the default when PyAV is installed) or
            "opencv" (OpenCV VideoWriter, 'mp4v'; only playable once closed).
        variable_rate: time frames by the ``timestamp`` given to :meth:`write` (seconds, in
            steps of ``time_base``) instead of 1/fps apart, so that a live recording of unevenly
            spaced frames, or a variable-frame-rate file, plays in real time (PyAV only; ``fps``
            is then a hint).
        time_base: with ``variable_rate``, the unit of the frames' timestamps in the file,
            seconds (default 1/1000; a file's own time base keeps its timing exactly).
        threaded: encode in a background thread (PyAV releases the GIL while encoding), so
            that encoding overlaps the next frame's inference; at most ``queue_size`` frames
            wait. An encoding error is raised by the next :meth:`write` or by :meth:`close`.
    Raises:
        RecordingError: the file cannot be created or the encoder cannot be opened.
    """

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int], crf: int = 20,
                 preset: str = "veryfast", finalize: bool = True, backend: str | None = None,
                 variable_rate: bool = False, threaded: bool = True, queue_size: int = 2,
                 time_base: Fraction | None = None):
        self.path = Path(path)
        self.variable_rate = bool(variable_rate)
        self.time_base = Fraction(time_base) if time_base else Fraction(1, 1000)
        self._t0: float | None = None
        self._last_pts = -1
        self.fps = _fps_fraction(fps)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.finalize = finalize
        self.frames_written = 0
        self._closed = False
        if backend is None:
            try:
                import av  # noqa: F401
                backend = "pyav"
            except ImportError:
                backend = "opencv"
        self.backend = backend
        if backend == "pyav":
            self._open_pyav(crf, preset)
        elif backend == "opencv":
            self._open_opencv()
        else:
            raise ValueError(f"unknown video backend {backend!r}")
        self._queue: queue.Queue | None = None
        self._error: BaseException | None = None
        self.frames_encoded = 0
        self._packets_muxed = 0
        self._frames_stored = 0
        self._on_stored: deque = deque()
        self._callback_failed = False
        if threaded:
            self._queue = queue.Queue(maxsize=max(1, int(queue_size)))
            self._thread = threading.Thread(target=self._encode_loop, name=f"encode {self.path.name}", daemon=True)
            self._thread.start()

    def _open_pyav(self, crf: int, preset: str) -> None:
        import av

        w, h = self.frame_size
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4", options={
                "movflags": "frag_every_frame+empty_moov+default_base_moof", "flush_packets": "1"})
        except (OSError, av.FFmpegError) as e:
            raise RecordingError(f"cannot create video {self.path}: {e}") from None
        try:
            stream = self._container.add_stream("libx264", rate=self.fps)
            stream.width, stream.height = w, h
            # 4:2:0 needs even sides; odd-sized frames keep their size in 4:4:4.
            stream.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
            if self.variable_rate:
                stream.codec_context.time_base = self.time_base
                stream.time_base = self.time_base
            else:
                stream.codec_context.time_base = 1 / self.fps
            stream.options = {"crf": str(int(crf)), "preset": preset, "tune": "zerolatency"}
            stream.codec_context.gop_size = max(1, round(float(self.fps)))
            stream.codec_context.open()
        except Exception as e:  # codec missing or refusing the settings
            self._container.close()
            raise RecordingError(f"cannot open the H.264 encoder for {self.path}: {e}") from None
        self._stream = stream
        if stream.pix_fmt != "yuv420p":
            log.warning("frame size %dx%d is odd: writing H.264 4:4:4, which some players do not play", w, h)

    def _open_opencv(self) -> None:
        import cv2

        self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(self.fps), self.frame_size)
        if not self._cv.isOpened():
            raise RecordingError(f"cannot create video {self.path} with OpenCV's mp4v writer")

    def write(self, frame_bgr: np.ndarray, timestamp: float | None = None, on_stored=None) -> None:
        """Append one (H, W, 3) uint8 BGR frame of size ``frame_size``.

        ``timestamp`` (seconds) places the frame in time when ``variable_rate`` is on
        (default: 1/fps after the previous frame); it is ignored otherwise. ``on_stored()``
        is called (on the encoding thread) once the frame is in the file: with PyAV when the
        muxer has written its fragment (on the next frame, or on :meth:`close`); an exception
        it raises fails the writer like an encoding error.

        Raises:
            ValueError: wrong frame size.
            RecordingError: the writer is closed.
        """
        if self._closed:
            raise RecordingError(f"video {self.path} is closed")
        if self._error is not None:
            raise RecordingError(f"writing video {self.path} failed: {self._error}")
        h, w = frame_bgr.shape[:2]
        if (w, h) != self.frame_size:
            raise ValueError(f"frame is {w}x{h}, video {self.path} is {self.frame_size[0]}x{self.frame_size[1]}")
        if self._queue is not None:
            self._queue.put((np.array(frame_bgr, dtype=np.uint8, copy=True), timestamp, on_stored))
        else:
            self._encode(frame_bgr, timestamp, on_stored)
            if self._error is not None:
                raise RecordingError(f"writing video {self.path} failed: {self._error}")
        self.frames_written += 1

    def _encode_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                self._encode(*item)

    def _encode(self, frame_bgr: np.ndarray, timestamp: float | None, on_stored=None) -> None:
        """Encode one frame; a failure is kept in ``_error`` (raised by write() or close())."""
        try:
            self._encode_frame(frame_bgr, timestamp, on_stored)
        except BaseException as e:
            self._error = e

    def _encode_frame(self, frame_bgr: np.ndarray, timestamp: float | None, on_stored) -> None:
        self._on_stored.append(on_stored)
        if self.backend == "opencv":
            self._cv.write(frame_bgr)
        else:
            import av
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
            if self.variable_rate:
                if timestamp is None:
                    pts = self._last_pts + max(1, round(1 / (self.fps * self.time_base)))
                else:
                    if self._t0 is None:
                        self._t0 = float(timestamp)
                    pts = round((float(timestamp) - self._t0) / self.time_base)
                frame.pts = max(pts, self._last_pts + 1)
                frame.time_base = self.time_base
            else:
                frame.pts = self.frames_encoded
            self._last_pts = frame.pts
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
                self._packets_muxed += 1
        self.frames_encoded += 1
        # The fragmented-MP4 muxer writes a frame's fragment when the next packet arrives.
        stored = self.frames_encoded if self.backend == "opencv" else self._packets_muxed - 1
        self._report_stored(stored)

    def _report_stored(self, stored: int) -> None:
        """Call ``on_stored`` of every frame up to number ``stored`` (frames in the file)."""
        while self._on_stored and self._frames_stored < stored and not self._callback_failed:
            callback = self._on_stored.popleft()
            self._frames_stored += 1
            if callback is not None:
                try:
                    callback()
                except BaseException:
                    self._callback_failed = True   # no later record may follow a lost one
                    raise

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent); then, for PyAV with ``finalize``,
        rewrite it as a plain MP4. Safe to call from ``finally`` after an interruption."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None:
            self._queue.put(None)   # after every queued frame
            self._thread.join()
        try:
            if self.backend == "opencv":
                self._cv.release()
                return
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
                    self._packets_muxed += 1
            finally:
                self._container.close()
        finally:
            try:   # every frame muxed is in the file now (also after an encoding error)
                self._report_stored(self._packets_muxed if self.backend == "pyav" else self.frames_encoded)
            except BaseException as e:
                self._error = self._error or e
            if self._error is not None:
                raise RecordingError(f"writing video {self.path} failed: {self._error}")
        if self.finalize and self.frames_encoded:
            try:
                remux_to_plain_mp4(self.path)
            except Exception as e:  # the fragmented file is complete and playable: keep it
                log.warning("kept fragmented MP4 %s (rewriting it failed: %s)", self.path, e)


def remux_to_plain_mp4(path: str | Path) -> None:
    """Rewrite an MP4 in place as a plain (non-fragmented) MP4 with its index at the front,
    copying the encoded stream (no re-encoding). The file is replaced atomically, through a
    temporary file of a name of its own (:func:`engine.outputs.replaced_atomically`), removed
    if the rewrite fails."""
    import av

    path = Path(path)
    with replaced_atomically(path, suffix=".mp4") as tmp:
        with av.open(str(path)) as src, av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as dst:
            ins = src.streams.video[0]
            outs = dst.add_stream_from_template(ins)
            for packet in src.demux(ins):
                if packet.dts is None:
                    continue
                packet.stream = outs
                dst.mux(packet)


class PoseRecorder:
    """The annotated video and the keypoints file of one run, written frame by frame.

    Args:
        video_path: annotated video file (.mp4), or None for keypoints only.
        keypoints_path: keypoints file (.jsonl, .csv or .coco.json), or None.
        fps: frame rate of the video, frames per second.
        frame_size: (width, height) of the frames, pixels.
        skeleton: the model's skeleton (joint names for the keypoints file).
        timestamps: time the video by each result's ``timestamp`` (live sources whose frames
            are unevenly spaced, e.g. when frames are dropped) instead of 1/fps apart.
        lock: lock both files (:class:`OutputLock`) until :meth:`close`; False when the
            caller already holds the lock.
        source: the input video's file name, recorded in the keypoints header (``source``;
            a COCO file names its image files after it); None for a camera.
        **video_options: passed to :class:`AnnotatedVideoWriter` (crf, preset, finalize, backend).
    Raises:
        RecordingError: a file cannot be created, or another run is writing it (nothing is
            left open or truncated then).
    """

    def __init__(self, video_path: str | Path | None, keypoints_path: str | Path | None, fps: float,
                 frame_size: tuple[int, int], skeleton, timestamps: bool = False, lock: bool = True,
                 source: str | None = None, **video_options):
        self.timestamps = bool(timestamps)
        self.video: AnnotatedVideoWriter | None = None
        self.keypoints: KeypointsWriter | None = None   # or an engine.coco.CocoWriter
        self._lock = OutputLock([video_path, keypoints_path]) if lock else None
        try:
            # The video first: if it cannot be opened, no keypoints file has been created or truncated.
            if video_path is not None:
                self.video = AnnotatedVideoWriter(video_path, fps, frame_size, variable_rate=self.timestamps,
                                                  **video_options)
            if keypoints_path is not None:
                header = {"video": None if video_path is None else Path(video_path).name,
                          **({"source": str(source)} if source else {}), "fps": _r(fps, 3),
                          "width": int(frame_size[0]), "height": int(frame_size[1]),
                          "size_note": "width and height of the frames as displayed, square pixels (a video "
                                       "with non-square pixels is resampled to its display geometry); joint "
                                       "coordinates are pixels of these frames",
                          "frames_note": f"one record per video frame, in order; a record is written once its "
                                         f"frame is in the video, so after an abrupt stop (process killed, disk "
                                         f"full) the video may hold up to {MAX_EXTRA_VIDEO_FRAMES} frames more "
                                         f"than this file has records, never fewer"}
                self.keypoints = open_keypoints_writer(keypoints_path, skeleton, header)
        except BaseException:
            if self.video is not None:
                self.video.close()
            if self._lock is not None:
                self._lock.release()
            raise

    @property
    def frames_written(self) -> int:
        """Frames recorded so far."""
        if self.video is not None:
            return self.video.frames_written
        return self.keypoints.frames_written if self.keypoints is not None else 0

    def write(self, annotated_frame: np.ndarray | None, result) -> None:
        """Record one frame: the annotated image (ignored when there is no video) and its
        :class:`engine.pipeline.FrameResult`."""
        on_stored = None
        if self.keypoints is not None:
            text = self.keypoints.serialize(result)
            if self.video is None:
                self.keypoints.write_serialized(text)
            else:   # the record follows its frame into the files (see the module docstring)
                on_stored = functools.partial(self.keypoints.write_serialized, text)
        if self.video is not None:
            self.video.write(annotated_frame, float(result.timestamp) if self.timestamps else None, on_stored)

    def close(self) -> None:
        """Close both files (idempotent); safe in ``finally`` after an interruption."""
        try:
            if self.video is not None:
                self.video.close()
        finally:
            try:
                if self.keypoints is not None:
                    self.keypoints.close()
            finally:
                if self._lock is not None:
                    self._lock.release()

    def __enter__(self) -> "PoseRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
