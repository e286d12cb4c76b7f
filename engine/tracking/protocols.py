"""What the pipeline needs from the tracking side, as :class:`typing.Protocol` classes (for
type checkers and readers; nothing checks them at run time).

- :class:`Tracker`: :class:`engine.tracking.tracker.PersonTracker`, or the caller's own.
- :class:`Verifier`: :class:`engine.tracking.verify.PoseVerifier`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..constants import B0Source
    from .tracker import Track
    from .verify import VerifyParams


class Tracker(Protocol):
    """Persons across frames (see :class:`engine.tracking.tracker.PersonTracker` for the meaning
    of each member)."""

    tracks: list[Track]
    max_confirmed: int | None
    max_undetected_seconds: float | None
    confirm_hits: int
    confirm_frames: int

    @property
    def full(self) -> bool:
        """``max_confirmed`` tracks are confirmed: new faces are ignored."""
        ...

    def update(self, b0: np.ndarray, faces: np.ndarray | None = None, scores: np.ndarray | None = None,
               timestamp: float | None = None, sources: list[B0Source] | None = None,
               frame_index: int | None = None, angles: np.ndarray | None = None,
               pending: bool = False) -> list[Track]:
        """Take one frame's detections (b0 (N, 4) pixels); return the persons to estimate in it."""
        ...

    def observe(self, track: Track, ok: bool, next_b0: np.ndarray | None = None,
                next_face: np.ndarray | None = None, next_angle: float = 0.0,
                timestamp: float | None = None, hidden: bool = False) -> None:
        """Report whether this frame's estimate of a track is a person (if not, whether another
        person in front hid it: ``hidden``), and what it implies for the next frame."""
        ...

    def drop(self, track: Track) -> None:
        """Forget a track."""
        ...

    def reset(self) -> None:
        """Drop every track (new video or source)."""
        ...


class Verifier(Protocol):
    """Whether estimates are the persons of their reference faces
    (:class:`engine.tracking.verify.PoseVerifier`)."""

    params: VerifyParams

    def check(self, poses: np.ndarray, faces: np.ndarray, angles: np.ndarray | None = None,
              from_pose: np.ndarray | None = None, implied: np.ndarray | None = None) -> np.ndarray:
        """(P,) bool for poses (P, k, 2) and reference faces (P, 4), pixels; ``angles`` (P,)
        radians, ``from_pose`` (P,) bool, ``implied`` (P, 4) the faces the poses imply."""
        ...
