"""The person detector that gives the cascade its initial box b0 (FLIC protocol of the paper).

DeepPose (Sec. 4.1) runs FLIC from a face detector: the detected face box is enlarged by a fixed
scaler, fitted on the training data so that the enlarged box holds all labelled joints, and that
box is b0, the box of the stage-1 crop. Here the face detector is MediaPipe's BlazeFace
(full-range model by default) through the MediaPipe Tasks ``FaceDetector``.

- :class:`FaceDetector`: faces (N, 4) as (cx, cy, w, h) pixels and scores (N,).
- :class:`FaceScaler`: face boxes -> b0 boxes (fitted by ``python main.py fit-scaler``).
- :class:`PersonDetector`: one person per detected face; b0 = scaler.apply(face).

Boxes follow engine.geometry: (cx, cy, w, h) in pixels, x right, y down, (0, 0) the centre of
the top-left pixel.

MediaPipe's native code (LiteRT, glog) prints start-up chatter to the process's stderr (INFO
lines, one "Sparsity tensors may not yet be fully supported" warning per sparse tensor, a
memory-alignment warning on an early image, INFO lines on close). The known chatter is filtered
out while a detector is created, runs its first few images and is closed; every other line
(errors included) is passed on.
Set ``DEEPPOSE_MEDIAPIPE_LOGS=1`` to see everything unfiltered.
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import sys
import tempfile
import threading
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FACE_MODEL_DIR = Path(__file__).resolve().parents[1] / "weights" / "face"
"""Folder of the bundled BlazeFace models (Apache-2.0, from the mediapipe 0.10.21 wheel)."""

FACE_MODELS = {
    "full": "face_detection_full_range_sparse.tflite",
    "short": "face_detection_short_range.tflite",
}
"""Short names of the bundled face models -> file names in :data:`FACE_MODEL_DIR`."""

DEFAULT_FACE_MODEL = FACE_MODELS["full"]
DEFAULT_MIN_CONFIDENCE = 0.5

FACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
"""BlazeFace's six face keypoints, in the order :meth:`FaceDetector.detect_with_keypoints` gives."""


class DetectorError(RuntimeError):
    """A face model that cannot be loaded or an image the detector cannot run on (one line)."""


def resolve_face_model(model: str | Path | None) -> Path:
    """The face model file for ``model``.

    Args:
        model: None (the full-range model), a short name ("full", "short"), a bare file name of
            a bundled model (looked up in :data:`FACE_MODEL_DIR`), or a path.
    Returns:
        The path (not checked for existence; :class:`FaceDetector` does that).
    """
    if model is None:
        return FACE_MODEL_DIR / DEFAULT_FACE_MODEL
    model = str(model)
    if model in FACE_MODELS:
        return FACE_MODEL_DIR / FACE_MODELS[model]
    path = Path(model)
    if len(path.parts) == 1 and not path.exists() and (FACE_MODEL_DIR / path).exists():
        return FACE_MODEL_DIR / path
    return path


# --------------------------------------------------------------------------- native log filter

_NOISE = re.compile(
    r"^(INFO: "
    r"|WARNING: \[model_load\.cc:\d+\] Sparsity tensors"
    r"|WARNING: Logging before InitGoogle\(\)"
    r"|[IW]\d{4} [\d:.]+ +\d+ )"
)
_LOG_LOCK = threading.Lock()
_QUIET_CALLS = 3  # LiteRT warns about input alignment on the second image; filter the first few


@contextlib.contextmanager
def _filtered_native_stderr(drop: tuple[str, ...] = ()):
    """Route file descriptor 2 to a temporary file for the block, then pass on every line that
    is not known MediaPipe chatter. ``drop`` holds extra texts to drop (e.g. the message of an
    exception raised from the block, so that it is not printed twice)."""
    if os.environ.get("DEEPPOSE_MEDIAPIPE_LOGS"):
        yield []
        return
    with _LOG_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (some GUI launches): nothing to filter
            yield []
            return
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), 2)
        extra: list[str] = []
        try:
            yield extra
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            tmp.close()
            kept = [line for line in text.splitlines()
                    if line.strip() and not _NOISE.match(line)
                    and not any(d and d in line for d in (*drop, *extra))]
            if kept:
                os.write(2, ("\n".join(kept) + "\n").encode())


# --------------------------------------------------------------------------- face detector

_OPEN_DETECTORS: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


@atexit.register
def _close_open_detectors() -> None:
    # MediaPipe's own __del__ runs during interpreter teardown, after its ctypes helpers are gone,
    # and prints a TypeError; closing every detector still open before teardown avoids that.
    for det in list(_OPEN_DETECTORS):
        det.close()


class FaceDetector:
    """BlazeFace through MediaPipe Tasks' ``FaceDetector`` in IMAGE running mode.

    Use as a context manager or call :meth:`close`; detectors still open at interpreter exit
    are closed by an atexit hook.

    Args:
        model_path: face model (.tflite): None for the bundled full-range model, a short name
            ("full", "short") or a path; see :func:`resolve_face_model`.
        min_confidence: minimum detection score in [0, 1].
        min_suppression: non-maximum-suppression overlap threshold.
    Raises:
        DetectorError: the model file is missing or is not a face detection model (one line).
    """

    def __init__(self, model_path: str | Path | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_suppression: float = 0.3):
        self.model_path = resolve_face_model(model_path)
        self.min_confidence = float(min_confidence)
        self._detector = None
        self._quiet_calls = _QUIET_CALLS
        if not self.model_path.is_file():
            raise DetectorError(f"face model missing: {self.model_path}")
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:  # pragma: no cover - mediapipe is a dependency
            raise DetectorError(f"mediapipe is not installed ({e}); pip install mediapipe") from None
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.min_confidence,
            min_suppression_threshold=float(min_suppression),
        )
        with _filtered_native_stderr() as drop:
            try:
                self._detector = vision.FaceDetector.create_from_options(options)
            except Exception as e:  # mediapipe raises ValueError / RuntimeError / FileNotFoundError
                msg = " ".join(str(e).split()) or type(e).__name__
                drop.append(msg)
                error = DetectorError(f"cannot load face model {self.model_path}: {msg}")
            else:
                error = None
        if error is not None:
            raise error
        _OPEN_DETECTORS.add(self)

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces.

        Args:
            image_bgr: (H, W, 3) uint8 BGR frame (also accepted: (H, W) gray, (H, W, 4) BGRA).
        Returns:
            faces: (N, 4) float64 boxes (cx, cy, w, h) in pixels, highest score first.
            scores: (N,) float64 detection scores in [0, 1].
        Raises:
            DetectorError: closed detector, or MediaPipe failed on the image.
            ValueError: not an image array.
        """
        faces, scores, _ = self.detect_with_keypoints(image_bgr)
        return faces, scores

    def detect_with_keypoints(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect`, plus BlazeFace's keypoints.

        Returns:
            faces (N, 4), scores (N,) as :meth:`detect`, and keypoints (N, 6, 2) in pixels, in
            the order of :data:`FACE_KEYPOINTS` (NaN where the model gave none).
        """
        import cv2

        if self._detector is None:
            raise DetectorError("face detector is closed")
        image = np.asarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        if image.ndim == 2 or image.shape[2] == 1:
            rgb = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
        elif image.shape[2] == 4:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        ctx = _filtered_native_stderr() if self._quiet_calls > 0 else contextlib.nullcontext()
        try:
            with ctx:
                result = self._detector.detect(mp_image)
        except Exception as e:
            raise DetectorError(f"face detection failed on a {width}x{height} image: "
                                f"{' '.join(str(e).split())}") from None
        self._quiet_calls -= 1
        n = len(result.detections)
        faces = np.zeros((n, 4))
        scores = np.zeros(n)
        keypoints = np.full((n, len(FACE_KEYPOINTS), 2), np.nan)
        for i, d in enumerate(result.detections):
            bb = d.bounding_box
            # MediaPipe's box is in continuous pixel coordinates (pixel i spans [i, i+1)); ours
            # put pixel centres on integers, hence the -0.5.
            faces[i] = (bb.origin_x + bb.width / 2.0 - 0.5, bb.origin_y + bb.height / 2.0 - 0.5, bb.width, bb.height)
            scores[i] = max((c.score for c in d.categories), default=0.0) if d.categories else 0.0
            for j, kp in enumerate((d.keypoints or [])[: len(FACE_KEYPOINTS)]):
                keypoints[i, j] = (kp.x * width - 0.5, kp.y * height - 0.5)
        order = np.argsort(-scores, kind="stable")
        return faces[order], scores[order], keypoints[order]

    def close(self) -> None:
        """Release the MediaPipe task (idempotent)."""
        det, self._detector = self._detector, None
        if det is not None:
            _OPEN_DETECTORS.discard(self)
            with _filtered_native_stderr():
                det.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter teardown
            pass


# --------------------------------------------------------------------------- scaler

def face_size(faces: np.ndarray) -> np.ndarray:
    """The face size s = sqrt(w * h) of face boxes (..., 4), in pixels (BlazeFace boxes are
    nearly square; the geometric mean is insensitive to their small aspect jitter)."""
    faces = np.asarray(faces, dtype=np.float64)
    return np.sqrt(faces[..., 2] * faces[..., 3])


@dataclass
class FaceScaler:
    """The fixed map from a face box to b0, in units of the face size s = sqrt(w_f * h_f)::

        b0_cx = face_cx + offset_x * s      b0_w = scale_x * s
        b0_cy = face_cy + offset_y * s      b0_h = scale_y * s

    Fitted on FLIC training data by ``python main.py fit-scaler`` (tools/fit_scaler.py) so that
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
    ``tools.fit_scaler.fit_joints_face`` on FLIC train against BlazeFace's boxes.

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


def face_roll(right_eye: np.ndarray, left_eye: np.ndarray) -> np.ndarray:
    """The roll of faces from their eyes: the angle of the line from the person's right eye to
    their left eye (BlazeFace's keypoints 0 and 1; the FLIC joints r_eye and l_eye).

    Args:
        right_eye, left_eye: (..., 2) pixels (x right, y down).
    Returns:
        (...,) radians in (-pi, pi]: 0 for an upright face seen from the front (the right eye
        on the image's left), positive when the face is turned clockwise on screen; NaN where
        an eye is missing. This is the ``angles`` convention of
        :func:`engine.geometry.crop_boxes`: cropping with it gives an upright face.
    """
    v = np.asarray(left_eye, dtype=np.float64) - np.asarray(right_eye, dtype=np.float64)
    return np.arctan2(v[..., 1], v[..., 0])


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


def plausible_face_keypoints(faces: np.ndarray, keypoints: np.ndarray, min_eyes: float = 0.15,
                             min_ears: float = 0.45) -> np.ndarray:
    """Whether BlazeFace's keypoints look like a face: the eyes at least ``min_eyes`` and the
    ears at least ``min_ears`` face sizes apart.

    Measured on walking.mp4 (every 12th frame, detections down to score 0.3): every real face
    has eyes >= 0.20 and ears >= 0.56 face sizes apart; the large false faces on textures
    (a litter bin, 97-127 px) have eyes <= 0.10 and ears <= 0.41 apart.

    Args:
        faces: (N, 4) face boxes (cx, cy, w, h) pixels.
        keypoints: (N, 6, 2) pixels in :data:`FACE_KEYPOINTS` order (NaN: not given).
    Returns:
        (N,) bool; True where the keypoints are missing (nothing to judge).
    """
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    kps = np.asarray(keypoints, dtype=np.float64).reshape(len(faces), -1, 2)
    s = np.maximum(face_size(faces), 1e-6)
    eyes = np.linalg.norm(kps[:, 0] - kps[:, 1], axis=-1) / s
    ears = np.linalg.norm(kps[:, 4] - kps[:, 5], axis=-1) / s
    ok = (eyes >= min_eyes) & (ears >= min_ears)
    return np.where(np.isfinite(eyes) & np.isfinite(ears), ok, True)


@dataclass
class PersonBoxes:
    """The persons found in one frame (P may be 0).

    Attributes:
        b0: (P, 4) initial boxes (cx, cy, w, h) in pixels for the cascade.
        faces: (P, 4) the face box of each person; NaN rows where b0 is not from a face.
        scores: (P,) face detection scores; 0 where b0 is not from a face.
        sources: P strings: "face" (scaled face box) or "frame" (whole-frame fallback).
        angles: (P,) roll of each b0 in radians (the face's roll, :func:`face_roll`; 0 for
            upright), or None: no rotation.
    """

    b0: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    sources: list[str]
    angles: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.b0)


class FullFrameDetector:
    """The person detector of models without a face scaler (LSP, as in the paper): one person
    per frame whose b0 is the whole frame (source "frame")."""

    def detect(self, image_bgr: np.ndarray, fallback: str | None = None) -> PersonBoxes:
        """One full-frame person for an (H, W, 3) image; ``fallback`` is accepted and ignored."""
        h, w = image_bgr.shape[:2]
        return PersonBoxes(frame_box(w, h)[None], np.full((1, 4), np.nan), np.zeros(1), ["frame"])

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
        if hasattr(self.face_detector, "detect_with_keypoints"):
            faces, scores, kps = self.face_detector.detect_with_keypoints(image_bgr)
        else:
            faces, scores = self.face_detector.detect(image_bgr)
            kps = np.full((len(faces), len(FACE_KEYPOINTS), 2), np.nan)
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        kps = np.asarray(kps, dtype=np.float64).reshape(len(faces), len(FACE_KEYPOINTS), 2)
        if self.check_keypoints and len(faces):
            ok = plausible_face_keypoints(faces, kps)
            faces, scores, kps = faces[ok], scores[ok], kps[ok]
        if self.max_persons is not None:
            faces, scores, kps = faces[: self.max_persons], scores[: self.max_persons], kps[: self.max_persons]
        if len(faces) == 0 and fallback == "frame":
            h, w = np.asarray(image_bgr).shape[:2]
            return PersonBoxes(frame_box(w, h)[None], np.full((1, 4), np.nan), np.zeros(1), ["frame"],
                               np.zeros(1) if self.rotate else None)
        angles = turn_angles(face_roll(kps[:, 0], kps[:, 1]), self.min_roll) if self.rotate else None
        return PersonBoxes(self.scaler.apply(faces, angles).reshape(-1, 4), faces, scores, ["face"] * len(faces),
                           angles)

    def close(self) -> None:
        """Close the face detector if this object opened it."""
        if self._owns_detector:
            self.face_detector.close()

    def __enter__(self) -> "PersonDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
