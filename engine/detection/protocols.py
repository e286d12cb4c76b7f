"""What the pipeline needs from the detection side, as :class:`typing.Protocol` classes (for
type checkers and readers; nothing checks them at run time).

- :class:`FaceDetecting`: a face detector (:class:`engine.detection.faces.FaceDetector`, or
  a stand-in), what the face searches and :class:`engine.detection.persons.PersonDetector` wrap.
- :class:`FaceSearch`: a face detector that can be told where the tracked faces are
  (:class:`engine.detection.search.TrackingFaceDetector`,
  :class:`engine.detection.search.TurnedFaceSearch`).
- :class:`PersonFinder`: the persons of a frame (:class:`engine.detection.persons.PersonDetector`,
  :class:`engine.detection.persons.FullFrameDetector`, or the caller's own ``detector``).

Boxes are (cx, cy, w, h) in frame pixels (engine.geometry's convention).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from .persons import PersonBoxes


class FaceDetecting(Protocol):
    """A face detector. It may also have ``detect_with_keypoints(image_bgr) -> (faces, scores,
    keypoints (N, 6, 2))``; :func:`engine.detection.faces.faces_with_keypoints` uses it where it
    is there (NaN keypoints where not)."""

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces (N, 4) (cx, cy, w, h) pixels and scores (N,) of an (H, W, 3) uint8 BGR image,
        highest score first."""
        ...

    def close(self) -> None:
        """Release the detector (idempotent)."""
        ...


class FaceSearch(Protocol):
    """A face search over a face detector that looks around the tracked faces."""

    def set_hints(self, faces: np.ndarray, windows_only: bool = False, rolls: np.ndarray | None = None) -> None:
        """Faces (N, 4) in frame pixels to look around in the next frame; ``windows_only``: only
        around them; ``rolls`` (N,) their rolls in radians (NaN or None: unknown)."""
        ...

    def reset(self) -> None:
        """New video or source: forget the hints; the next frame gets the whole search."""
        ...

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces (N, 4) (cx, cy, w, h) frame pixels and scores (N,), highest score first."""
        ...

    def detect_with_keypoints(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect` plus BlazeFace's six keypoints (N, 6, 2) in frame pixels, in
        :data:`engine.detection.faces.FACE_KEYPOINTS` order (NaN where not given)."""
        ...

    def close(self) -> None:
        """Close the wrapped face detector(s)."""
        ...


class PersonFinder(Protocol):
    """The persons of one frame: the pipeline's ``detector``."""

    def detect(self, image_bgr: np.ndarray) -> PersonBoxes:
        """The persons found in an (H, W, 3) uint8 BGR frame (P may be 0)."""
        ...

    def close(self) -> None:
        """Release what the finder opened."""
        ...
