"""The multi-scale face search around a face detector: tiles, windows around the tracked faces,
and the frame turned by quarter and half turns for lying and upside-down persons.

- :class:`TrackingFaceDetector`: the whole frame, windows around hinted faces and tiles, merged
  by non-maximum suppression (:func:`engine.detection.boxes.nms`); finds the small faces of
  distant persons that BlazeFace misses on the whole frame.
- :class:`TurnedFaceSearch`: one :class:`TrackingFaceDetector` per turn of the frame
  (``np.rot90``), faces and keypoints back in frame pixels.
- :func:`turn_points`: pixel coordinates in a turned frame and back.

Both have the :class:`engine.detection.protocols.FaceSearch` interface. Boxes are (cx, cy, w, h)
in frame pixels (engine.geometry's convention).
"""
from __future__ import annotations

import numpy as np

from .boxes import nms
from .faces import FACE_KEYPOINTS, face_size, faces_with_keypoints


def merged(found: list, nms_iou: float, nms_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces of several searches (tiles, windows, turns) as one set: ``found`` holds
    (faces (n, 4), scores (n,), keypoints (n, 6, 2)) per search, frame pixels; returns their
    union after :func:`engine.detection.boxes.nms` (faces (N, 4), scores (N,), keypoints (N, 6, 2))."""
    k = len(FACE_KEYPOINTS)
    faces = np.concatenate([np.zeros((0, 4))] + [np.asarray(f, np.float64).reshape(-1, 4) for f, _, _ in found])
    scores = np.concatenate([np.zeros(0)] + [np.asarray(s, np.float64).reshape(-1) for _, s, _ in found])
    kps = np.concatenate([np.zeros((0, k, 2))] + [np.asarray(p, np.float64).reshape(-1, k, 2) for _, _, p in found])
    if not len(faces):
        return faces, scores, kps
    keep = nms(faces, scores, nms_iou, nms_overlap)
    return faces[keep], scores[keep], kps[keep]


def _starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    out = list(range(0, n - tile, stride))
    out.append(n - tile)
    return out


class TrackingFaceDetector:
    """A multi-scale face detector that also finds small faces, with the interface of
    :class:`engine.detection.faces.FaceDetector` (``detect(image) -> (faces (N, 4), scores (N,))`` and
    ``detect_with_keypoints``); used by the video command, the app and evaluation alike.

    BlazeFace sees the whole frame at 192x192, so a face under ~10% of the frame's longer side
    shrinks below what it can resolve: in a 1280x720 frame a person a few metres away, in a
    540x360 FLIC still a 40 px face. Each call runs the wrapped detector on:

    - the whole frame (large faces), keeping detections scored at least the wrapped
      detector's threshold;
    - windows around the faces given by :meth:`set_hints` (the tracked persons' last faces)
      that are too small for the whole-frame pass (under ``large_face`` of the frame's longer
      side), each ``roi_scale`` face sizes wide (at least ``min_roi`` px), at most
      ``max_rois`` of them (largest faces first);
    - ``tiles_per_frame`` tiles, in turn, so that new small faces are found within a few
      frames; the first call after :meth:`reset` scans every tile (a still image: call
      :meth:`reset` before each). Frames whose longer side is over ``small_frame`` (and
      ``tile``) px get a grid of ``tile`` x ``tile`` windows (``overlap`` between
      neighbours); smaller frames (stills such as FLIC's 540x360, a 640x480 webcam) get five
      overlapping tiles of ``small_tile`` of the frame's size (four corners and the centre).
      With ``first_tile``, that first call on a large frame also scans a grid of ``first_tile``
      px tiles (the faces too small for ``tile`` that are in view from the start).

    ``set_hints(faces, windows_only=True)`` makes the next call look only around the hinted
    faces: a window around every one of them (a face too large for a window gets the whole
    frame), no whole-frame pass for the others and no tiles; more than ``max_rois`` faces get
    the whole search instead. The pipeline does this when its tracker is full (``max_persons``
    reached): new faces would be ignored, and the detector only has to find the tracked faces
    again (one BlazeFace call per person instead of three). A tracked face under
    ``large_face`` is held to ``window_min_confidence`` there, as in the whole search's windows.

    Window and tile hits are zoomed-in views where BlazeFace also fires on hands, clothes and
    textures, so they must score at least ``tile_min_confidence`` (stricter than the whole
    frame's). Detections are merged by non-maximum suppression (IoU ``nms_iou``, or one box
    mostly inside another, ``nms_overlap``). All boxes are
    (cx, cy, w, h) in frame pixels.

    Measured on FLIC val (531 persons, 540x360 stills, whole frame at 0.3): the annotated
    person's face is found for 94.4% of persons on the whole frame alone and for 97.6% with the
    five 0.6-size tiles at a tile threshold of 0.7 (97.9% at 0.5, with 30% more other hits).

    Args:
        face_detector: the wrapped detector (closed by :meth:`close`).
        tile: tile side in pixels for large frames (640); frames no larger get the five tiles.
        overlap: tile overlap fraction (0.25).
        tiles_per_frame: tiles scanned per frame (1).
        roi_scale: window side around a hinted face, in face sizes (5).
        min_roi: smallest window side, pixels (192, BlazeFace's input size).
        max_rois: most windows per frame (4).
        nms_iou: IoU above which two detections are the same face (0.3).
        nms_overlap: ... or the fraction of the smaller box inside the other above this (None:
            IoU only, as the cached dataset detections were made; the pipeline uses 0.6).
        large_face: faces at least this fraction of the frame's longer side (0.12, i.e. 23 px
            of BlazeFace's 192 px input) need no window.
        small_frame: frames up to this longer side (720 px) get the five small-frame tiles.
        small_tile: tile size of small frames as a fraction of the frame's width and height
            (0.6); 0 turns the small-frame tiles off.
        tile_min_confidence: lowest score of a tile hit (0.7).
        window_min_confidence: lowest score of a hit in a window around a hinted face (default:
            ``tile_min_confidence``); a face already tracked there may be held to less.
        first_tile: side of the finer tiles the first call after :meth:`reset` also scans on
            frames larger than ``tile`` and ``small_frame`` (None: none), at
            ``tile_min_confidence``.
    """

    def __init__(self, face_detector, tile: int = 640, overlap: float = 0.25, tiles_per_frame: int = 1,
                 roi_scale: float = 5.0, min_roi: int = 192, max_rois: int = 4, nms_iou: float = 0.3,
                 large_face: float = 0.12, small_tile: float = 0.6, tile_min_confidence: float = 0.7,
                 nms_overlap: float | None = None, window_min_confidence: float | None = None,
                 small_frame: int = 720, first_tile: int | None = None):
        self.face_detector = face_detector
        self.small_frame = int(small_frame)
        self.tile = int(tile)
        self.first_tile = None if first_tile is None else int(first_tile)
        self.overlap = float(overlap)
        self.tiles_per_frame = int(tiles_per_frame)
        self.roi_scale = float(roi_scale)
        self.min_roi = int(min_roi)
        self.max_rois = int(max_rois)
        self.nms_iou = float(nms_iou)
        self.nms_overlap = None if nms_overlap is None else float(nms_overlap)
        self.large_face = float(large_face)
        self.small_tile = float(small_tile)
        self.tile_min_confidence = float(tile_min_confidence)
        self.window_min_confidence = self.tile_min_confidence if window_min_confidence is None else float(window_min_confidence)
        self._hints = np.zeros((0, 4))
        self.reset()

    def reset(self) -> None:
        """New video or source: forget hints; the next frame scans every tile."""
        self._hints = np.zeros((0, 4))
        self._windows_only = False
        self._next_tile = 0
        self._full_scan = True

    def set_hints(self, faces: np.ndarray, windows_only: bool = False, rolls: np.ndarray | None = None) -> None:
        """Faces (N, 4) to look around in the next frame (the tracked persons' last faces);
        with ``windows_only``, the next frame is searched only around them (see the class
        docstring; without any finite face, the whole search runs). ``rolls`` is
        :meth:`TurnedFaceSearch.set_hints`'s; this search has one orientation and ignores it."""
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        self._hints = faces[np.isfinite(faces).all(axis=1)]
        self._windows_only = bool(windows_only) and len(self._hints) > 0

    def tiles(self, width: int, height: int, tile: int | None = None) -> list[tuple[int, int, int, int]]:
        """The tiles of a frame: (x0, y0, x1, y1) pixel ranges (x1, y1 exclusive); ``tile``: their
        side on a large frame (default ``self.tile``)."""
        t = self.tile if tile is None else int(tile)
        if max(width, height) <= max(self.tile, self.small_frame):
            if not 0 < self.small_tile < 1:
                return []
            tw, th = int(round(width * self.small_tile)), int(round(height * self.small_tile))
            corners = [(0, 0), (width - tw, 0), (0, height - th), (width - tw, height - th),
                       ((width - tw) // 2, (height - th) // 2)]
            return [(x, y, x + tw, y + th) for x, y in corners]
        tw, th = min(t, width), min(t, height)
        stride = max(1, int(round(t * (1.0 - self.overlap))))
        return [(x, y, x + tw, y + th) for y in _starts(height, th, stride) for x in _starts(width, tw, stride)]

    def _run(self, image: np.ndarray, x0: int, y0: int, x1: int, y1: int, out: list, min_score: float = 0.0) -> None:
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        faces, scores, kps = faces_with_keypoints(self.face_detector, crop)
        scores = np.asarray(scores, dtype=np.float64)
        keep = scores >= min_score
        if keep.any():
            faces = np.asarray(faces, dtype=np.float64)[keep].copy()
            kps = np.asarray(kps, dtype=np.float64)[keep].copy()
            faces[:, :2] += (x0, y0)
            kps += (x0, y0)
            out.append((faces, scores[keep], kps))

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces (N, 4) (cx, cy, w, h) pixels and scores (N,), highest score first."""
        faces, scores, _ = self.detect_with_keypoints(image_bgr)
        return faces, scores

    def detect_with_keypoints(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect`, plus BlazeFace's six keypoints (N, 6, 2) in frame pixels (NaN where
        the wrapped detector gives none), in :data:`engine.detection.faces.FACE_KEYPOINTS` order."""
        found: list = []
        try:
            if self._windows_only and not self._full_scan and len(self._hints) <= self.max_rois:
                self._windows(image_bgr, found)
            else:
                self._search(image_bgr, found)
        finally:
            self._windows_only = False
        return merged(found, self.nms_iou, self.nms_overlap)

    def _window(self, face: np.ndarray, size: float, w: int, h: int) -> tuple[int, int, int]:
        """(x0, y0, side) of the square window around one hinted face of size ``size``
        (:func:`engine.detection.faces.face_size`), inside a w x h frame."""
        side = int(min(max(self.roi_scale * size, self.min_roi), w, h))
        x0 = int(min(max(round(face[0] - side / 2), 0), w - side))
        y0 = int(min(max(round(face[1] - side / 2), 0), h - side))
        return x0, y0, side

    def _windows(self, image_bgr: np.ndarray, found: list) -> None:
        """Windows-only search: a window around every hinted face (small ones at
        ``window_min_confidence``), the whole frame once for those too large for one."""
        h, w = image_bgr.shape[:2]
        hints = self._hints
        sizes = face_size(hints)
        whole = False
        for i in np.argsort(-sizes):
            x0, y0, side = self._window(hints[i], sizes[i], w, h)
            if sizes[i] >= self.large_face * max(w, h) or side >= max(w, h):
                whole = True
            else:
                self._run(image_bgr, x0, y0, x0 + side, y0 + side, found, self.window_min_confidence)
        if whole:
            self._run(image_bgr, 0, 0, w, h, found)

    def _search(self, image_bgr: np.ndarray, found: list) -> None:
        """The whole search: the whole frame, windows around small hinted faces, tiles."""
        h, w = image_bgr.shape[:2]
        self._run(image_bgr, 0, 0, w, h, found)
        strict = self.tile_min_confidence
        hints = self._hints
        if len(hints):
            sizes = face_size(hints)
            small = np.flatnonzero(sizes < self.large_face * max(w, h))
            for i in small[np.argsort(-sizes[small])][: self.max_rois]:
                x0, y0, side = self._window(hints[i], sizes[i], w, h)
                if side < max(w, h):
                    self._run(image_bgr, x0, y0, x0 + side, y0 + side, found, self.window_min_confidence)
        grid = self.tiles(w, h)
        if grid:
            todo = range(len(grid)) if self._full_scan else [
                (self._next_tile + j) % len(grid) for j in range(min(self.tiles_per_frame, len(grid)))]
            for j in todo:
                self._run(image_bgr, *grid[j], found, strict)
            self._next_tile = (self._next_tile + (0 if self._full_scan else len(todo))) % len(grid)
        if self._full_scan and self.first_tile and max(w, h) > max(self.tile, self.small_frame):
            for box in self.tiles(w, h, self.first_tile):
                self._run(image_bgr, *box, found, strict)
        self._full_scan = False

    def close(self) -> None:
        """Close the wrapped detector."""
        if hasattr(self.face_detector, "close"):
            self.face_detector.close()


def turn_points(xy: np.ndarray, k: int, width: int, height: int, inverse: bool = False) -> np.ndarray:
    """Pixel coordinates (..., 2) of a width x height frame in the frame turned by
    ``np.rot90(frame, k)`` (k = 1: a quarter turn counter-clockwise on screen, -1 or 3:
    clockwise, 2: a half turn, 0: unchanged), or back with ``inverse``. Exact for the
    pixel-centre convention."""
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    if k % 4 == 0:
        return xy.copy()
    if k % 4 == 1:
        out = (y, width - 1 - x) if not inverse else (width - 1 - y, x)   # (x', y') = (y, W-1-x)
    elif k % 4 == 3:
        out = (height - 1 - y, x) if not inverse else (y, height - 1 - x)  # (x', y') = (H-1-y, x)
    else:   # a half turn is its own inverse
        out = (width - 1 - x, height - 1 - y)
    return np.stack(out, axis=-1)


class TurnedFaceSearch:
    """Face search on the frame and on the frame turned by quarter and half turns, for rotated
    b0: BlazeFace finds faces rolled by up to about 45 degrees, so a lying person's face is found
    only in the frame turned by 90 degrees, an upside-down person's in the frame turned by 180. Each turn has its own
    :class:`TrackingFaceDetector` (tiles and windows in its own coordinates); the faces and
    keypoints come back in frame pixels, so that :func:`engine.detection.faces.face_roll` of the
    keypoints gives the person's roll (about +-90 degrees for a lying person).

    Args:
        searches: {k: TrackingFaceDetector} for the turns ``np.rot90(frame, k)``, k in
            {0, 1, 2, -1}; they may share one wrapped face detector, closed once by :meth:`close`.
        nms_iou, nms_overlap: merging of the faces found in several turns (see :func:`nms`).
    """

    TURN_REACH_DEG = 60.0
    """With ``windows_only``, a tracked face is looked for only in the turns that bring its roll
    within this many degrees of upright (BlazeFace finds faces rolled by up to about 45)."""

    def __init__(self, searches: dict, nms_iou: float = 0.3, nms_overlap: float = 0.6):
        self.searches = dict(searches)
        self.nms_iou, self.nms_overlap = float(nms_iou), float(nms_overlap)
        self._hints = np.zeros((0, 4))
        self._rolls = np.zeros(0)
        self._windows_only = False

    def reset(self) -> None:
        """New video or source (see :meth:`TrackingFaceDetector.reset`)."""
        self._hints = np.zeros((0, 4))
        self._rolls = np.zeros(0)
        self._windows_only = False
        for s in self.searches.values():
            s.reset()

    def set_hints(self, faces: np.ndarray, windows_only: bool = False, rolls: np.ndarray | None = None) -> None:
        """Faces (N, 4) in frame pixels to look around in the next frame; ``windows_only``:
        only around them (see :meth:`TrackingFaceDetector.set_hints`), and only in the turns
        that bring each face's roll (``rolls`` (N,) radians, the :func:`engine.detection.faces.face_roll`
        convention; NaN or None: unknown, every turn) within :attr:`TURN_REACH_DEG` of upright:
        one BlazeFace call per upright person instead of one per turn."""
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        rolls = np.full(len(faces), np.nan) if rolls is None else np.asarray(rolls, dtype=np.float64).reshape(-1)
        keep = np.isfinite(faces).all(axis=1)
        self._hints, self._rolls = faces[keep], rolls[keep]
        self._windows_only = bool(windows_only)

    def _hints_for_turn(self, k: int) -> np.ndarray:
        """The hints to look around in the frame turned by ``np.rot90(frame, k)``: all of them,
        but with ``windows_only`` those whose roll that turn brings near upright (a face rolled
        clockwise by k quarter turns is upright in the frame turned counter-clockwise by k)."""
        if not self._windows_only:
            return self._hints
        gap = np.degrees(np.angle(np.exp(1j * (self._rolls - k * np.pi / 2))))   # wrapped to (-180, 180]
        return self._hints[~np.isfinite(self._rolls) | (np.abs(gap) <= self.TURN_REACH_DEG)]

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces (N, 4) (cx, cy, w, h) frame pixels and scores (N,), highest score first."""
        faces, scores, _ = self.detect_with_keypoints(image_bgr)
        return faces, scores

    def detect_with_keypoints(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect` plus the six keypoints (N, 6, 2) in frame pixels."""
        h, w = image_bgr.shape[:2]
        out = []
        try:
            for k, search in self.searches.items():
                hints = self._hints_for_turn(k).copy()
                if self._windows_only and not len(hints):
                    continue   # no tracked face is near upright in this turn: nothing to look for
                turned = image_bgr if k == 0 else np.ascontiguousarray(np.rot90(image_bgr, k))
                hints[:, :2] = turn_points(hints[:, :2], k, w, h)
                if k % 2:
                    hints[:, 2:] = hints[:, [3, 2]]
                search.set_hints(hints, self._windows_only)
                faces, scores, kps = search.detect_with_keypoints(turned)
                faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4).copy()
                faces[:, :2] = turn_points(faces[:, :2], k, w, h, inverse=True)
                if k % 2:
                    faces[:, 2:] = faces[:, [3, 2]]
                out.append((faces, np.asarray(scores, dtype=np.float64), turn_points(kps, k, w, h, inverse=True)))
        finally:
            self._windows_only = False
        return merged(out, self.nms_iou, self.nms_overlap)

    def close(self) -> None:
        """Close the wrapped face detectors (each once)."""
        seen = set()
        for s in self.searches.values():
            inner = getattr(s, "face_detector", s)
            if id(inner) not in seen:
                seen.add(id(inner))
                s.close()
