"""A peer pose estimator for side-by-side measurements: MediaPipe's pose landmarker
(BlazePose, a ``.task`` bundle such as ``../shared/models/peers/pose_landmarker_full.task``).

Used by ``main.py benchmark --peer`` and the evaluation tools (``animate --peer``, ``cuts``); it is
never part of our pose path (``engine/``
does not import it). ``python -m deeppose.tools.eval.peer TASK INPUT OUTPUT`` runs the peer's whole
video job (decode, landmarks, drawing, the same H.264 writer as ours), for
``benchmark --peer-video`` to time against ``main.py video``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

BLAZEPOSE_JOINTS = {"l_shoulder": 11, "r_shoulder": 12, "l_elbow": 13, "r_elbow": 14, "l_wrist": 15, "r_wrist": 16,
                    "l_hip": 23, "r_hip": 24, "l_knee": 25, "r_knee": 26, "l_ankle": 27, "r_ankle": 28}
"""Our joint names with their BlazePose landmark indices (the 12 body joints both have)."""


def peer_pose(landmarks: np.ndarray, skeleton) -> np.ndarray:
    """One BlazePose figure in ``skeleton``'s joints.

    Args:
        landmarks: (33, 2) landmarks of one person, pixels (:meth:`MediaPipePeer.process`).
        skeleton: an :class:`engine.skeletons.Skeleton`.
    Returns:
        (k, 2) pixels; NaN for the joints not in :data:`BLAZEPOSE_JOINTS` (e.g. LSP's neck and
        head top).
    """
    out = np.full((skeleton.k, 2), np.nan)
    for j, name in enumerate(skeleton.joints):
        if name in BLAZEPOSE_JOINTS:
            out[j] = landmarks[BLAZEPOSE_JOINTS[name]]
    return out


class PeerError(Exception):
    """The peer model cannot be used (missing file, not a pose landmarker bundle); one line."""


class MediaPipePeer:
    """MediaPipe's pose landmarker in VIDEO mode (its detector-then-tracker), one frame at a time.

    Args:
        task_path: the landmarker's ``.task`` bundle.
        num_poses: most persons it looks for (MediaPipe's default is 1).
    Raises:
        PeerError: the file is missing, not a file, or MediaPipe cannot load it as a pose
            landmarker (one line).
    """

    def __init__(self, task_path: str | Path, num_poses: int = 1):
        self.path = Path(task_path)
        if not self.path.exists():
            raise PeerError(f"peer model {self.path} does not exist")
        if not self.path.is_file():
            raise PeerError(f"peer model {self.path} is not a file")
        from deeppose.engine.detection.faces import import_mediapipe

        try:
            mp, BaseOptions, vision = import_mediapipe()
        except ImportError as e:
            raise PeerError(f"mediapipe is not installed ({e})") from None
        self._mp = mp
        options = vision.PoseLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(self.path)),
                                               running_mode=vision.RunningMode.VIDEO, num_poses=int(num_poses))
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except Exception as e:  # mediapipe raises ValueError / RuntimeError on a bad bundle
            msg = " ".join(str(e).split())[:200] or type(e).__name__
            raise PeerError(f"cannot load peer model {self.path} as a MediaPipe pose landmarker: {msg}") from None
        self._last_ms = -1

    def process(self, frame_bgr: np.ndarray, timestamp_s: float) -> np.ndarray:
        """Landmarks of one video frame, BGR -> RGB conversion included (part of its job).

        Args:
            frame_bgr: (H, W, 3) uint8 BGR frame.
            timestamp_s: frame time in seconds; MediaPipe requires it to increase from call to
                call (a repeated or earlier time is moved 1 ms past the last one).
        Returns:
            (P, 33, 2) float32 landmarks in pixels (x right, y down), P persons found.
        """
        import cv2

        ms = max(int(round(timestamp_s * 1000)), self._last_ms + 1)
        self._last_ms = ms
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        result = self._landmarker.detect_for_video(image, ms)
        h, w = frame_bgr.shape[:2]
        out = np.array([[(p.x * w, p.y * h) for p in pose] for pose in result.pose_landmarks], dtype=np.float32)
        return out.reshape(-1, 33, 2)

    def close(self) -> None:
        """Release MediaPipe's graph (idempotent)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "MediaPipePeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def video_job(task_path: str | Path, input_path: str | Path, output_path: str | Path) -> int:
    """The peer doing what ``main.py video`` does: every frame of ``input_path`` decoded,
    landmarked (VIDEO mode), its skeleton drawn, and written to ``output_path`` with our
    :class:`engine.recording.AnnotatedVideoWriter` (the same encoder and settings).

    Returns:
        frames processed.
    Raises:
        PeerError: the peer model cannot be loaded; engine.frames.SourceError: the input.
    """
    import cv2

    from deeppose.engine.detection.faces import import_mediapipe
    from deeppose.engine.frames import FrameReader, open_source
    from deeppose.engine.recording import AnnotatedVideoWriter

    _, _, vision = import_mediapipe()
    lines = [(c.start, c.end) for c in vision.PoseLandmarksConnections.POSE_LANDMARKS]
    opened = open_source(input_path)
    reader = FrameReader(opened)
    # timed as the video command times its output: each frame at its source time
    writer = AnnotatedVideoWriter(output_path, opened.fps, opened.size, variable_rate=True,
                                  time_base=getattr(opened.capture, "time_base", None))
    n = 0
    try:
        with MediaPipePeer(task_path) as peer:
            for _, frame, timestamp in reader:
                for pose in peer.process(frame, timestamp):
                    pts = np.round(pose).astype(np.int32)
                    for a, b in lines:
                        cv2.line(frame, tuple(map(int, pts[a])), tuple(map(int, pts[b])), (0, 255, 255), 2, cv2.LINE_AA)
                writer.write(frame, timestamp)
                n += 1
    finally:
        writer.close()
        reader.close()
    return n


if __name__ == "__main__":
    import sys
    import time

    if len(sys.argv) != 4:
        sys.exit("usage: python -m deeppose.tools.eval.peer TASK INPUT OUTPUT.mp4")
    t0 = time.perf_counter()
    try:
        frames = video_job(*sys.argv[1:])
    except (PeerError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"peer: {frames} frames in {time.perf_counter() - t0:.1f} s")
