"""Face detection: MediaPipe's BlazeFace (full-range model by default), run by our own code on
LiteRT (:mod:`engine.detection.blazeface`) or through MediaPipe Tasks' ``FaceDetector``, and what the face
boxes and keypoints tell.

- :class:`FaceDetector`: faces (N, 4) as (cx, cy, w, h) pixels, scores (N,), keypoints (N, 6, 2).
- :func:`faces_with_keypoints`: faces, scores and keypoints from any face detector.
- :func:`face_size`, :func:`face_roll`, :func:`plausible_face_keypoints`.
- :func:`import_mediapipe`, :func:`resolve_face_model`, :func:`resolve_face_runtime`.

The person boxes b0 made from the faces are in :mod:`engine.detection.persons`, the multi-scale
search around a face detector in :mod:`engine.detection.search`. Boxes follow
engine.geometry: (cx, cy, w, h) in pixels, x right, y down, (0, 0) the centre of the top-left
pixel. MediaPipe's native chatter on stderr is filtered out (:mod:`engine.detection.native_stderr`).
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.machinery
import importlib.util
import sys
import weakref
from pathlib import Path

import numpy as np

from ..constants import FACE_MODEL_DIR  # the bundled BlazeFace models (Apache-2.0, from the mediapipe 0.10.21 wheel)
from ..interrupts import caused_by_ctrl_c, ctrl_c_held
from .native_stderr import filtered_native_stderr

_LAZY_MEDIAPIPE_MODULES = frozenset({"mediapipe.tasks.python.vision.drawing_utils",
                                     "mediapipe.tasks.python.vision.drawing_styles",
                                     "mediapipe.tasks.python.audio", "mediapipe.tasks.python.text",
                                     "mediapipe.tasks.python.decision", "mediapipe.tasks.python.retrieval"})
"""MediaPipe modules that ``import mediapipe`` loads but the face detector never uses:
drawing_utils imports ``matplotlib.pyplot`` at module level (with the matplotlib package, about
0.3 s of start-up and 20 MiB of resident memory); the audio, text, decision and retrieval task
packages took another 0.11 s (audio imports ``sounddevice``)."""


class _LazyMediaPipeModules:
    """A ``sys.meta_path`` finder that gives :data:`_LAZY_MEDIAPIPE_MODULES` the standard
    library's :class:`importlib.util.LazyLoader`: each is imported as usual (bound on its
    package, in ``sys.modules``) but runs only when one of its attributes is first used."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname not in _LAZY_MEDIAPIPE_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def import_mediapipe():
    """``(mediapipe, BaseOptions, vision)`` of MediaPipe Tasks, without loading matplotlib.

    ``mediapipe.tasks.python.vision`` imports its drawing helpers, which import
    ``matplotlib.pyplot`` at module level, and ``mediapipe.tasks.python`` imports every task
    family (audio, text, ...). Those modules are imported lazily (:class:`_LazyMediaPipeModules`,
    :data:`_LAZY_MEDIAPIPE_MODULES`): they, and matplotlib, load only if one is ever used.

    Raises:
        ImportError: mediapipe is not installed.
    """
    sys.meta_path.insert(0, _LazyMediaPipeModules)
    try:
        with ctrl_c_held():   # MediaPipe's native initialization does not survive a KeyboardInterrupt
            import mediapipe
            from mediapipe.tasks.python import BaseOptions, vision
    finally:
        sys.meta_path.remove(_LazyMediaPipeModules)
    return mediapipe, BaseOptions, vision


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


# --------------------------------------------------------------------------- face detector

_QUIET_CALLS = 3  # MediaPipe's TFLite warns about input alignment on the second image; filter the first few
_OPEN_DETECTORS: "weakref.WeakSet[FaceDetector]" = weakref.WeakSet()


@atexit.register
def _close_open_detectors() -> None:
    # MediaPipe's own __del__ runs during interpreter teardown, after its ctypes helpers are gone,
    # and prints a TypeError; closing every detector still open before teardown avoids that.
    for det in list(_OPEN_DETECTORS):
        det.close()


FACE_RUNTIMES = ("auto", "litert", "mediapipe")
"""How :class:`FaceDetector` runs BlazeFace: "litert" our own steps around a LiteRT interpreter
(:class:`engine.detection.blazeface.BlazeFace`, about twice as fast), "mediapipe" MediaPipe Tasks'
FaceDetector, "auto" LiteRT where ``ai-edge-litert`` imports, else MediaPipe."""


def resolve_face_runtime(runtime: str = "auto") -> str:
    """The runtime :class:`FaceDetector` uses for ``runtime`` (one of :data:`FACE_RUNTIMES`):
    "litert" or "mediapipe"; "auto" is "litert" where ``ai_edge_litert.interpreter`` imports
    (tried once per process), else "mediapipe".

    Raises:
        DetectorError: an unknown runtime (one line).
    """
    if runtime not in FACE_RUNTIMES:
        raise DetectorError(f"face detector runtime must be one of {', '.join(FACE_RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return "litert" if _litert_imports() else "mediapipe"
    return runtime


@functools.lru_cache(maxsize=1)
def _litert_imports() -> bool:
    # Ctrl-C held: raised inside LiteRT's native initialization it became an ImportError, read
    # here as "not installed" (engine.interrupts); it is raised once the import is done.
    with ctrl_c_held():
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except Exception:  # not installed, or a broken install: MediaPipe runs BlazeFace instead
            return False
    return True


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


class FaceDetector:
    """BlazeFace: on LiteRT by our own code (:class:`engine.detection.blazeface.BlazeFace`), or through
    MediaPipe Tasks' ``FaceDetector`` in IMAGE running mode; both give the same faces (scored
    at least 0.5: boxes within 2 px, scores within 0.02; see :mod:`engine.detection.blazeface`).

    Use as a context manager or call :meth:`close`; detectors still open at interpreter exit
    are closed by an atexit hook.

    Args:
        model_path: face model (.tflite): None for the bundled full-range model, a short name
            ("full", "short") or a path; see :func:`resolve_face_model`.
        min_confidence: minimum detection score in [0, 1].
        min_suppression: non-maximum-suppression overlap threshold.
        runtime: one of :data:`FACE_RUNTIMES` (default "auto"); the one used is :attr:`runtime`.
        threads: LiteRT threads (default: the CPUs this process may run on, at most 4); MediaPipe
            chooses its own.
    Raises:
        DetectorError: the model file is missing or is not a face detection model, or the
            runtime asked for is not installed (one line).
    """

    def __init__(self, model_path: str | Path | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_suppression: float = 0.3, runtime: str = "auto", threads: int | None = None):
        self.model_path = resolve_face_model(model_path)
        self.min_confidence = float(min_confidence)
        self._detector = None
        self._quiet_calls = _QUIET_CALLS
        self.runtime = resolve_face_runtime(runtime)
        if not self.model_path.is_file():
            raise DetectorError(f"face model missing: {self.model_path}")
        with filtered_native_stderr() as drop:
            try:
                self._detector = self._create(min_suppression, threads)
            except Exception as e:  # the runtimes raise ValueError / RuntimeError / FileNotFoundError
                if caused_by_ctrl_c(e):   # a Ctrl-C that Python or a native call wrapped (engine.interrupts)
                    raise
                msg = _one_line(e)
                drop.append(msg)
                error = e if isinstance(e, DetectorError) else DetectorError(f"cannot load face model {self.model_path}: {msg}")
            else:
                error = None
        if error is not None:
            raise error
        _OPEN_DETECTORS.add(self)

    def _create(self, min_suppression: float, threads: int | None):
        """The runtime's detector object (raises what the runtime raises; ``__init__`` turns it
        into a one-line DetectorError naming the file)."""
        if self.runtime == "litert":
            from .blazeface import BlazeFace
            if not _litert_imports():
                raise DetectorError("the litert face detector runtime needs ai-edge-litert: pip install ai-edge-litert")
            return BlazeFace(self.model_path, self.min_confidence, min_suppression, threads)
        try:
            mp, BaseOptions, vision = import_mediapipe()
        except ImportError as e:  # pragma: no cover - mediapipe is a dependency
            raise DetectorError(f"mediapipe is not installed ({e}); pip install mediapipe") from None
        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.min_confidence,
            min_suppression_threshold=float(min_suppression),
        )
        return vision.FaceDetector.create_from_options(options)

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces.

        Args:
            image_bgr: (H, W, 3) uint8 BGR frame (also accepted: (H, W) gray, (H, W, 4) BGRA).
        Returns:
            faces: (N, 4) float64 boxes (cx, cy, w, h) in pixels, highest score first.
            scores: (N,) float64 detection scores in [0, 1].
        Raises:
            DetectorError: closed detector, an empty image, or the runtime failed on the image.
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
        if image.size == 0:
            raise DetectorError(f"face detection failed on a {image.shape[1]}x{image.shape[0]} image: it is empty")
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if self.runtime == "litert":
            try:
                return self._detector.detect(image)
            except (ValueError, RuntimeError) as e:
                raise DetectorError(f"face detection failed on a {image.shape[1]}x{image.shape[0]} image: "
                                    f"{_one_line(e)}") from None
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        ctx = filtered_native_stderr() if self._quiet_calls > 0 else contextlib.nullcontext()
        try:
            with ctx:
                result = self._detector.detect(mp_image)
        except Exception as e:
            raise DetectorError(f"face detection failed on a {width}x{height} image: {_one_line(e)}") from None
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
        """Release the runtime's detector (idempotent)."""
        det, self._detector = self._detector, None
        if det is not None:
            _OPEN_DETECTORS.discard(self)
            with filtered_native_stderr():
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


def faces_with_keypoints(face_detector, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces, scores and keypoints of one image from any face detector
    (:class:`engine.detection.protocols.FaceDetecting`): its ``detect_with_keypoints`` where it
    has one, else its ``detect`` with NaN keypoints (a detector that gives no keypoints).

    Args:
        face_detector: an object with ``detect(image) -> (faces (N, 4), scores (N,))`` and
            optionally ``detect_with_keypoints(image) -> (faces, scores, keypoints (N, 6, 2))``.
        image_bgr: (H, W, 3) uint8 BGR image.
    Returns:
        faces (N, 4) (cx, cy, w, h) pixels, scores (N,) and keypoints (N, 6, 2) pixels in
        :data:`FACE_KEYPOINTS` order (NaN where not given), as the detector returns them.
    """
    if hasattr(face_detector, "detect_with_keypoints"):
        return face_detector.detect_with_keypoints(image_bgr)
    faces, scores = face_detector.detect(image_bgr)
    return faces, scores, np.full((len(faces), len(FACE_KEYPOINTS), 2), np.nan)


# --------------------------------------------------------------------------- face geometry

def face_size(faces: np.ndarray) -> np.ndarray:
    """The face size s = sqrt(w * h) of face boxes (..., 4), in pixels (BlazeFace boxes are
    nearly square; the geometric mean is insensitive to their small aspect jitter)."""
    faces = np.asarray(faces, dtype=np.float64)
    return np.sqrt(faces[..., 2] * faces[..., 3])


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
