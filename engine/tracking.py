"""Persons across frames: the tracker (detections matched to tracks, confirmation of new
persons, holding of lost ones, tracking by pose) and the multi-scale face search.

A track is one person seen over consecutive frames. Each frame the tracker is given the
frame's face detections (possibly none: the pipeline runs the face detector only every few
frames once persons are tracked) and assigns them to the live tracks by maximum total IoU of
the face boxes (Hungarian assignment, pairs below ``iou_threshold`` rejected); the face a
track is matched on is the one its last pose implies (tracking by pose) or its last detected
face. Then:

- a detection left over starts a new, *tentative* track (a whole-frame box, source "frame",
  is confirmed at once). A tentative track is estimated but not drawn: it is *confirmed*
  once detected (and, with :meth:`PersonTracker.observe`, verified) in ``confirm_hits``
  frames within its first ``confirm_frames`` frames, and dropped if it is not -- a spurious
  face (a hand, a pattern on a wall, a litter bin: BlazeFace scores these 0.3-0.6) rarely
  holds for several frames;
- a track with a b0 predicted from its last verified pose (:meth:`PersonTracker.observe`)
  continues with that b0 (source ``"pose"``) whether or not a detection matched it, for at
  most ``max_undetected_seconds`` since a detection last matched it; a matching detection
  gives the frame's b0 instead (``anchor``);
- a confirmed track with neither is *held*: its last good b0 is used again (source ``"held"``)
  while it has been missed for at most ``max_hold_frames`` frames and ``max_hold_seconds``
  seconds, and is dropped after that. A held track keeps its id for a detection to take up
  again; the pipeline, when it verifies poses, does not draw it (so a held track is never a
  ghost beside its person); without verification it draws it at its last b0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .detector import joints_face
from .face_detector import FACE_KEYPOINTS, face_size


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection areas (N, M) of boxes a (N, 4) and b (M, 4), and their areas (N, 1), (1, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    a0, a1 = a[:, None, 0:2] - a[:, None, 2:4] / 2, a[:, None, 0:2] + a[:, None, 2:4] / 2
    b0, b1 = b[None, :, 0:2] - b[None, :, 2:4] / 2, b[None, :, 0:2] + b[None, :, 2:4] / 2
    wh = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
    return wh[..., 0] * wh[..., 1], a[:, None, 2] * a[:, None, 3], b[None, :, 2] * b[None, :, 3]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Args:
        a: (N, 4) boxes (cx, cy, w, h) in pixels.
        b: (M, 4) boxes (cx, cy, w, h) in pixels.
    Returns:
        (N, M) IoU in [0, 1]; 0 for degenerate (empty or non-finite) boxes.
    """
    inter, area_a, area_b = _intersections(a, b)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, for every box of ``a`` with every box of ``b``.

    Args:
        a: (N, 4), b: (M, 4) boxes (cx, cy, w, h) in pixels.
    Returns:
        (N, M) in [0, 1]: 1 when one box lies inside the other; 0 for degenerate boxes.
    """
    inter, area_a, area_b = _intersections(a, b)
    small = np.minimum(area_a, area_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(small > 0, inter / small, 0.0)
    return np.nan_to_num(out, nan=0.0)


def max_weight_assignment(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns paired one to one so that the summed weight is largest (the assignment
    problem; the Hungarian method with potentials, O(n^2 m) for an n x m matrix, n <= m).

    The tracker pairs its tracks with a frame's detections by this on their box IoU. Its
    matrices are a few persons across, so this costs microseconds, where importing
    ``scipy.optimize`` for ``linear_sum_assignment`` took half a second of every start-up.

    Args:
        weight: (T, N) finite weights, any sign.
    Returns:
        (rows, cols): int arrays of length min(T, N), rows ascending; row rows[i] is paired
        with column cols[i]. Every row (T <= N) or every column (T > N) is paired.
    Raises:
        ValueError: ``weight`` is not 2-D or holds a non-finite value.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise ValueError(f"expected a finite 2-D weight matrix, got shape {w.shape}")
    if w.shape[0] > w.shape[1]:
        cols, rows = max_weight_assignment(w.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    n, m = w.shape
    if n == 0:
        return np.zeros(0, int), np.zeros(0, int)
    cost = w.max() - w                      # minimise cost = maximise weight
    u, v = np.zeros(n + 1), np.zeros(m + 1)  # potentials of rows and columns (1-based, 0 is a sentinel)
    row_of = np.zeros(m + 1, int)            # row_of[j]: row paired with column j, 0 when free
    for i in range(1, n + 1):                # add row i and find a shortest augmenting path for it
        row_of[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        way = np.zeros(m + 1, int)
        used = np.zeros(m + 1, bool)
        while row_of[j0] != 0:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
        while j0:                            # flip the path
            j1 = way[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    cols = np.flatnonzero(row_of[1:])
    rows = row_of[1:][cols] - 1
    order = np.argsort(rows)
    return rows[order], cols[order]


@dataclass
class Track:
    """One person followed across frames.

    Attributes:
        track_id: id, unique within a tracker's life (until :meth:`PersonTracker.reset`).
        b0: (4,) this frame's person box (cx, cy, w, h), pixels (in the box's own frame when
            ``angle`` is not 0).
        face: (4,) the face box this frame's b0 was made from, pixels: the detected face
            (source "face"), the face implied by the previous pose (source "pose"), or None
            (held, full-frame).
        score: the last face detection score.
        source: how this frame's b0 was obtained: "face" (a face detected in this frame),
            "pose" (from the previous frame's pose), "held" (the last good b0 of a lost
            person) or "frame" (whole-frame fallback).
        last_seen_frame: index of the last frame it was detected or verified in.
        last_seen_time: timestamp (seconds) of that frame.
        misses: consecutive frames it was neither detected nor verified in.
        state: free room for per-person state kept by the caller (e.g. the smoothing filter).
        last_face: (4,) the last face box it was matched on (detected or from its pose), pixels,
            or None; the face search looks around it.
        hits: frames it was detected (and verified) in.
        first_frame: index of the frame it started in.
        confirmed: detected in ``confirm_hits`` frames: drawn from then on.
        angle: roll of this frame's b0, radians (0: upright).
        next_b0, next_face, next_angle: the b0, face and roll its last verified pose implies
            for the next frame (tracking by pose), or None.
        good_b0, good_angle: the last b0 (and roll) whose pose verified: what a held track uses.
        detected: a detection matched it in this frame.
        verified: its estimate in this frame verified (:meth:`PersonTracker.observe`).
        age: frames the tracker was given since it started, this one included (the caller
            may skip frames: a live source drops frames while the pipeline is busy).
        last_detected_time: timestamp (seconds) of the last frame a detection matched it in.
        pending_hit: this frame's detection counts as a hit once :meth:`PersonTracker.observe`
            verifies it.
        first_step: the tracker's update count when it started.
        detection: the row of the last :meth:`PersonTracker.update`'s ``b0`` it matched or
            started from, or None when no detection matched it in that frame (each row goes
            to exactly one track, so persons with identical boxes get one track each).
    """

    track_id: int
    b0: np.ndarray
    face: np.ndarray | None
    score: float
    source: str
    last_seen_frame: int
    last_seen_time: float
    misses: int = 0
    state: dict = field(default_factory=dict)
    last_face: np.ndarray | None = None
    hits: int = 1
    first_frame: int = 0
    confirmed: bool = False
    angle: float = 0.0
    next_b0: np.ndarray | None = None
    next_face: np.ndarray | None = None
    next_angle: float = 0.0
    good_b0: np.ndarray | None = None
    good_angle: float = 0.0
    detected: bool = False
    verified: bool = False
    age: int = 1
    last_detected_time: float = 0.0
    pending_hit: bool = False
    first_step: int = 0
    detection: int | None = None


class PersonTracker:
    """Match face detections to persons across frames; confirm new persons over several frames;
    follow tracked persons by pose; hold lost persons briefly (see the module docstring).

    Without :meth:`observe` it is a detect-and-match tracker: a track is seen when a
    detection matches it, and held (its last b0) when none does. With :meth:`observe` (as
    :class:`engine.pipeline.PosePipeline` uses it) each frame's estimate is verified, a
    verified pose gives the next frame's b0, and a detection counts as a hit only once its
    pose verified.

    Args:
        iou_threshold: least IoU of the face boxes (b0 boxes where faces are missing) for a
            detection to continue a track (0.2).
        max_hold_frames: a lost confirmed track is held for at most this many consecutive
            frames (15) ...
        max_hold_seconds: ... and at most this long since it was last seen (0.5 s).
        confirm_hits: a new track is confirmed (drawn) once detected in this many frames (3;
            1 draws every detection at once) ...
        confirm_frames: ... within its first this many frames (5; frames given to
            :meth:`update`, so a live source that drops frames is no harder); else it is dropped.
        anchor: a detection matched to a track followed by pose gives that frame's b0 (source
            "face"), so that the small errors of tracking by pose do not add up (True); False:
            the pose's b0 is kept and the detection only confirms the track.
        max_undetected_seconds: a track followed by pose that no detection has matched for
            longer than this is dropped (1.0 s): the pose may have slid onto someone passing in
            front, or onto the background. None: no limit.
        max_confirmed: the tracker's capacity (None: no limit; settable at any time). A track
            is confirmed only while fewer are; once that many are, tentative tracks are
            dropped (they cost neither crops nor forced detections), so newly found faces are
            ignored until a confirmed track is lost. Lowered below the confirmed count, the
            longest-tracked ones are kept (the lowest ids: ids are handed out in order).
    Raises:
        ValueError: ``max_confirmed`` below 1.
    """

    def __init__(self, iou_threshold: float = 0.2, max_hold_frames: int = 15, max_hold_seconds: float = 0.5,
                 confirm_hits: int = 3, confirm_frames: int = 5, anchor: bool = True,
                 max_undetected_seconds: float | None = 1.0, max_confirmed: int | None = None):
        self.iou_threshold = float(iou_threshold)
        self.max_hold_frames = int(max_hold_frames)
        self.max_hold_seconds = float(max_hold_seconds)
        self.confirm_hits = max(1, int(confirm_hits))
        self.confirm_frames = max(self.confirm_hits, int(confirm_frames))
        self.anchor = bool(anchor)
        self.max_undetected_seconds = None if max_undetected_seconds is None else float(max_undetected_seconds)
        self.max_confirmed = max_confirmed
        self.reset()

    @property
    def max_confirmed(self) -> int | None:
        """The capacity (None: no limit); see the class docstring."""
        return self._max_confirmed

    @max_confirmed.setter
    def max_confirmed(self, n: int | None) -> None:
        if n is not None and int(n) < 1:
            raise ValueError(f"the tracker's capacity (max_persons) must be at least 1, got {n}")
        self._max_confirmed = None if n is None else int(n)

    def reset(self) -> None:
        """Drop every track (new video or source); ids start again at 1."""
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame = -1
        self._step = -1

    @property
    def full(self) -> bool:
        """At capacity: ``max_confirmed`` tracks or more are confirmed (new faces are ignored)."""
        return self.max_confirmed is not None and sum(tr.confirmed for tr in self.tracks) >= self.max_confirmed

    def _confirm(self, tr: Track) -> None:
        if not tr.confirmed and tr.hits >= self.confirm_hits and not self.full:
            tr.confirmed = True

    def update(self, b0: np.ndarray, faces: np.ndarray | None = None, scores: np.ndarray | None = None,
               timestamp: float | None = None, sources: list[str] | None = None,
               frame_index: int | None = None, angles: np.ndarray | None = None,
               pending: bool = False) -> list[Track]:
        """Take one frame's detections; return the persons to estimate in it.

        Args:
            b0: (N, 4) detected person boxes (cx, cy, w, h), pixels; N may be 0 (also when
                the face detector did not run on this frame).
            faces: (N, 4) face boxes they came from, or None (no faces, e.g. full-frame boxes).
            scores: (N,) detection scores (default 1).
            timestamp: frame time in seconds (default: frame index / 30).
            sources: (N,) b0 source per detection, "face" (default) or "frame".
            frame_index: the frame's index (default: previous + 1).
            angles: (N,) roll of each b0 in radians (default 0).
            pending: the caller verifies this frame's estimates with :meth:`observe`: a
                matched detection counts as a hit (and as seen) only once verified.
        Returns:
            The tracks present in this frame, ordered by track id, tentative ones included
            (``confirmed`` False): detected ones (``detected`` True), ones followed by pose
            (``source`` "pose", b0 from the previous pose) and held ones (``source`` "held",
            ``b0`` the last good box). Dropped tracks are gone from :attr:`tracks`.
        """
        self._frame = self._frame + 1 if frame_index is None else int(frame_index)
        self._step += 1
        t = self._frame / 30.0 if timestamp is None else float(timestamp)
        b0 = np.asarray(b0, dtype=np.float64).reshape(-1, 4)
        n = len(b0)
        faces_arr = None if faces is None else np.asarray(faces, dtype=np.float64).reshape(-1, 4)
        scores_arr = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        angles_arr = np.zeros(n) if angles is None else np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(-1))
        sources = list(sources) if sources is not None else ["face" if faces_arr is not None else "frame"] * n

        matched_det: dict[int, Track] = {}
        if n and self.tracks:
            tb0 = np.stack([tr.next_b0 if tr.next_b0 is not None else tr.b0 for tr in self.tracks])
            tface = [tr.last_face for tr in self.tracks]   # observe() keeps it at the pose-implied face
            iou = box_iou(tb0, b0)                                     # (T, N)
            if faces_arr is not None:
                have = np.array([f is not None and np.isfinite(f).all() for f in tface])
                det_ok = np.isfinite(faces_arr).all(axis=1)
                if have.any() and det_ok.any():
                    fi = box_iou(np.stack([f if h else np.zeros(4) for f, h in zip(tface, have)]), faces_arr)
                    both = have[:, None] & det_ok[None, :]
                    iou = np.where(both, fi, iou)
            rows, cols = max_weight_assignment(iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= self.iou_threshold:
                    matched_det[int(c)] = self.tracks[r]

        present: list[Track] = []
        taken: set[int] = set()
        for i in range(n):
            face = None if faces_arr is None or sources[i] != "face" else faces_arr[i].copy()
            tr = matched_det.get(i)
            if tr is None:
                tr = Track(self._next_id, b0[i].copy(), face, float(scores_arr[i]), sources[i], self._frame, t,
                           last_face=face, first_frame=self._frame, angle=float(angles_arr[i]),
                           hits=0 if pending else 1, last_detected_time=t, first_step=self._step,
                           confirmed=sources[i] == "frame")   # the whole frame is no face to confirm
                self._next_id += 1
            else:
                tr.score = float(scores_arr[i])
                tr.last_detected_time = t
                if tr.next_b0 is not None and not self.anchor:   # followed by pose: the detection confirms it
                    tr.b0, tr.face, tr.angle, tr.source = tr.next_b0, tr.next_face, tr.next_angle, "pose"
                else:
                    tr.b0, tr.face, tr.angle, tr.source = b0[i].copy(), face, float(angles_arr[i]), sources[i]
                if face is not None:
                    tr.last_face = face
                if not pending:
                    tr.hits += 1
                    tr.last_seen_frame, tr.last_seen_time, tr.misses = self._frame, t, 0
            tr.detected, tr.pending_hit, tr.detection = True, pending, i
            self._confirm(tr)
            present.append(tr)
            taken.add(id(tr))
        for tr in self.tracks:
            if id(tr) in taken:
                continue
            tr.detected = tr.pending_hit = False
            tr.detection = None
            if tr.next_b0 is not None:
                if self.max_undetected_seconds is not None and t - tr.last_detected_time > self.max_undetected_seconds + 1e-9:
                    continue
                tr.b0, tr.face, tr.angle, tr.source = tr.next_b0, tr.next_face, tr.next_angle, "pose"
                present.append(tr)
                continue
            tr.misses += 1
            if (tr.confirmed and tr.misses <= self.max_hold_frames
                    and t - tr.last_seen_time <= self.max_hold_seconds + 1e-9):
                tr.source, tr.face = "held", None
                if tr.good_b0 is not None:
                    tr.b0, tr.angle = tr.good_b0, tr.good_angle
                present.append(tr)
        kept = []
        for tr in present:
            tr.age = self._step - tr.first_step + 1
            tr.next_b0, tr.next_face = None, None
            tr.verified = False
            if not tr.confirmed and tr.age >= self.confirm_frames and tr.hits + tr.pending_hit < self.confirm_hits:
                continue                                   # never confirmed: a spurious face
            kept.append(tr)
        kept.sort(key=lambda tr: tr.track_id)
        if self.max_confirmed is not None:   # the capacity: tentative tracks go once it is reached
            confirmed = [tr for tr in kept if tr.confirmed]
            if len(confirmed) >= self.max_confirmed:   # kept is in id order: the longest tracked first
                keep = {id(tr) for tr in confirmed[: self.max_confirmed]}
                kept = [tr for tr in kept if id(tr) in keep]
        self.tracks = kept
        return list(kept)

    def observe(self, track: Track, ok: bool, next_b0: np.ndarray | None = None,
                next_face: np.ndarray | None = None, next_angle: float = 0.0, timestamp: float | None = None) -> None:
        """Report whether this frame's estimate of a track (returned by the last :meth:`update`)
        is a person.

        Args:
            track: the track.
            ok: the estimate verified (see :func:`engine.pipeline.verify_poses`).
            next_b0, next_face, next_angle: the b0 (4,), face box (4,) and roll (radians) the
                pose implies for the next frame (tracking by pose); None: no prediction (the
                track is matched on its last face, and held when no detection matches it).
            timestamp: the frame's time in seconds (default: frame index / 30).
        Effects:
            ok: a detection of this frame becomes a hit (a tentative track may be confirmed),
            the track is seen now, and ``next_*`` are stored. Not ok: a tentative track is
            dropped; a confirmed one is missed in this frame (held from the next frame on,
            unless a detection matches it again).
        """
        t = self._frame / 30.0 if timestamp is None else float(timestamp)
        track.verified = bool(ok)
        if ok:
            if track.pending_hit:
                track.hits += 1
                track.pending_hit = False
                self._confirm(track)
            track.last_seen_frame, track.last_seen_time, track.misses = self._frame, t, 0
            track.good_b0, track.good_angle = np.asarray(track.b0, dtype=np.float64).copy(), float(track.angle)
            track.next_b0 = None if next_b0 is None else np.asarray(next_b0, dtype=np.float64).copy()
            track.next_face = None if next_face is None else np.asarray(next_face, dtype=np.float64).copy()
            track.next_angle = float(next_angle)
            if track.next_face is not None:
                track.last_face = track.next_face
            return
        track.next_b0, track.next_face = None, None
        if not track.confirmed:
            self.drop(track)
            return
        track.misses += 1

    def drop(self, track: Track) -> None:
        """Forget a track (e.g. a duplicate of another person)."""
        self.tracks = [tr for tr in self.tracks if tr is not track]


# --------------------------------------------------------------------------- is it a person?

@dataclass
class VerifyParams:
    """Thresholds of :func:`verify_poses`, in face sizes s = sqrt(w * h) of the reference face.

    Measured on walking.mp4 (every 12th frame, the shipped model, stage 3): on the 40 real
    faces the eyes and nose imply a face at most 0.35 s from the detected one, 0.59-1.19 times
    its size, shoulders 0.47-1.28 s below its centre and 1.16-2.5 s apart.

    Attributes:
        max_shift: largest distance from the face the eyes and nose imply (``joints_face``) to
            the reference face, centre to centre (0.5).
        max_scale: largest size ratio between the two, either way (1.8).
        min_shoulder_drop: least height of the shoulders' midpoint below the face centre (0.25),
            measured along the face's upright axis.
        min_shoulder_width: least distance between the shoulders (0.6).
        max_pose_shift, max_pose_scale, min_pose_scale: the limits for an estimate whose
            reference face is the one the previous frame's pose implied (tracking by pose:
            frame-to-frame consistency): shift at most 0.4, size 0.6-1.3x. Measured on
            walking.mp4 (detection every 5th frame): 90% of such estimates shift by at most
            0.17 s and change size by 0.86-1.15x, the walker's down to 0.70x in a frame where
            he turns his head; a pose sliding onto someone passing in front grew 1.6x in one
            frame, three frames in a row.
    """

    max_shift: float = 0.5
    max_scale: float = 1.8
    min_shoulder_drop: float = 0.25
    min_shoulder_width: float = 0.6
    max_pose_shift: float = 0.4
    max_pose_scale: float = 1.3
    min_pose_scale: float = 0.6


def verify_poses(poses: np.ndarray, faces: np.ndarray, skeleton, joints_face_params: dict | None = None,
                 angles: np.ndarray | None = None, params: VerifyParams | None = None,
                 from_pose: np.ndarray | None = None, implied: np.ndarray | None = None) -> np.ndarray:
    """Whether each estimated pose is a person whose face is the reference face: the cascade
    checks its own candidate (a "face" found on a hand, a belt or a bin gets a pose whose eyes
    and nose do not land on it, or whose shoulders are not below it).

    Checks, in units of the reference face's size s (see :class:`VerifyParams`): the face the
    predicted eyes and nose imply (:func:`engine.detector.joints_face`) lies near the reference
    face and has about its size; the shoulders are below the face (in the face's upright frame
    when ``angles`` is given) and apart. Every joint used must be finite.

    Args:
        poses: (P, k, 2) estimated poses, pixels.
        faces: (P, 4) reference face boxes (cx, cy, w, h), pixels: the face b0 was made from
            (detected, or implied by the previous pose when tracking by pose).
        skeleton: the poses' skeleton; without eyes, nose and shoulders nothing is checked
            (all True).
        joints_face_params: the scaler's "joints_face" parameters.
        angles: (P,) roll of each person, radians (default 0).
        params: thresholds (default :class:`VerifyParams`).
        from_pose: (P,) bool, True where the reference face is the one the previous pose
            implied (held to the ``*_pose_*`` limits); default all False.
        implied: (P, 4) the faces the poses imply, if the caller has them already (default:
            computed here with ``joints_face_params``).
    Returns:
        (P,) bool.
    """
    prm = params or VerifyParams()
    poses = np.asarray(poses, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    p = len(faces)
    names = ("l_shoulder", "r_shoulder")
    if p == 0 or not all(n in skeleton.joints for n in names):
        return np.ones(p, bool)
    if implied is None:
        implied = joints_face(poses, skeleton, joints_face_params)           # (P, 4)
    if not np.isfinite(implied).any():
        return np.ones(p, bool)
    s = np.maximum(face_size(faces), 1e-6)
    shift = np.linalg.norm(implied[:, :2] - faces[:, :2], axis=1) / s
    scale = implied[:, 2] / s
    a = np.zeros(p) if angles is None else np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(p))
    ls, rs = (poses[:, skeleton.joints.index(n)] for n in names)
    mid = (ls + rs) / 2 - faces[:, :2]
    drop = (-np.sin(a) * mid[:, 0] + np.cos(a) * mid[:, 1]) / s             # along the face's "down"
    width = np.linalg.norm(ls - rs, axis=1) / s
    tracked = np.zeros(p, bool) if from_pose is None else np.asarray(from_pose, bool).reshape(p)
    max_shift = np.where(tracked, prm.max_pose_shift, prm.max_shift)
    max_scale = np.where(tracked, prm.max_pose_scale, prm.max_scale)
    min_scale = np.where(tracked, prm.min_pose_scale, 1.0 / prm.max_scale)
    with np.errstate(invalid="ignore"):
        ok = ((shift <= max_shift) & (scale <= max_scale) & (scale >= min_scale)
              & (drop >= prm.min_shoulder_drop) & (width >= prm.min_shoulder_width))
    return ok & np.isfinite(implied).all(axis=1)


BODY_SEGMENTS = (("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("r_shoulder", "r_elbow"),
                 ("r_elbow", "r_wrist"), ("l_shoulder", "l_hip"), ("r_shoulder", "r_hip"), ("l_hip", "r_hip"))
"""The limbs and torso sides :func:`on_bodies` tests against."""


def on_bodies(points: np.ndarray, poses: np.ndarray, sizes: np.ndarray, skeleton, radius: float = 0.6) -> np.ndarray:
    """Whether points lie on the bodies of estimated persons: inside a torso (the quadrilateral
    of shoulders and hips) or within ``radius`` face sizes of an arm or a torso side. A face
    found there is a hand, a belt or a pattern on someone's clothes, not a new person.

    Args:
        points: (M, 2) pixels (e.g. the centres of new face detections).
        poses: (P, k, 2) the persons' poses, pixels.
        sizes: (P,) their face sizes, pixels.
        skeleton: with shoulders, elbows, wrists and hips (else nothing is on a body).
    Returns:
        (M,) bool.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poses = np.asarray(poses, dtype=np.float64)
    out = np.zeros(len(points), bool)
    need = {n for seg in BODY_SEGMENTS for n in seg}
    if not len(points) or not len(poses) or not need <= set(skeleton.joints):
        return out
    j = skeleton.joints.index
    for pose, size in zip(poses, np.asarray(sizes, dtype=np.float64).reshape(-1)):
        if not np.isfinite(pose[[j(n) for n in need]]).all():
            continue
        r = radius * size
        for a, b in BODY_SEGMENTS:
            pa, pb = pose[j(a)], pose[j(b)]
            ab = pb - pa
            tt = np.clip(((points - pa) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
            out |= np.linalg.norm(points - (pa + tt[:, None] * ab), axis=1) <= r
        quad = np.array([pose[j("l_shoulder")], pose[j("r_shoulder")], pose[j("r_hip")], pose[j("l_hip")]])
        edge = np.roll(quad, -1, axis=0) - quad                              # (4, 2)
        rel = points[:, None, :] - quad[None]                                # (M, 4, 2)
        cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
        out |= (cross >= 0).all(axis=1) | (cross <= 0).all(axis=1)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3,
        overlap_threshold: float | None = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) boxes (cx, cy, w, h), pixels.
        scores: (N,) scores.
        iou_threshold: a box whose IoU with a kept one is above this is suppressed.
        overlap_threshold: ... as is one that lies this much inside a kept one or holds it
            (intersection over the smaller box, :func:`box_overlap`); None: IoU only. Merges
            the nested boxes BlazeFace gives one face at two scales.
    Returns:
        Indices of the kept boxes, highest score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    same = box_iou(boxes, boxes) > iou_threshold
    if overlap_threshold is not None:
        same |= box_overlap(boxes, boxes) > overlap_threshold
    keep: list[int] = []
    for i in order:
        if not any(same[i, j] for j in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


def _starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    out = list(range(0, n - tile, stride))
    out.append(n - tile)
    return out


class TrackingFaceDetector:
    """A multi-scale face detector that also finds small faces, with the interface of
    :class:`engine.face_detector.FaceDetector` (``detect(image) -> (faces (N, 4), scores (N,))`` and
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
    """

    def __init__(self, face_detector, tile: int = 640, overlap: float = 0.25, tiles_per_frame: int = 1,
                 roi_scale: float = 5.0, min_roi: int = 192, max_rois: int = 4, nms_iou: float = 0.3,
                 large_face: float = 0.12, small_tile: float = 0.6, tile_min_confidence: float = 0.7,
                 nms_overlap: float | None = None, window_min_confidence: float | None = None,
                 small_frame: int = 720):
        self.face_detector = face_detector
        self.small_frame = int(small_frame)
        self.tile = int(tile)
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

    def tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The tiles of a frame: (x0, y0, x1, y1) pixel ranges (x1, y1 exclusive)."""
        t = self.tile
        if max(width, height) <= max(t, self.small_frame):
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
        if hasattr(self.face_detector, "detect_with_keypoints"):
            faces, scores, kps = self.face_detector.detect_with_keypoints(crop)
        else:
            faces, scores = self.face_detector.detect(crop)
            kps = np.full((len(faces), len(FACE_KEYPOINTS), 2), np.nan)
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
        the wrapped detector gives none), in :data:`engine.face_detector.FACE_KEYPOINTS` order."""
        found: list = []
        try:
            if self._windows_only and not self._full_scan and len(self._hints) <= self.max_rois:
                self._windows(image_bgr, found)
            else:
                self._search(image_bgr, found)
        finally:
            self._windows_only = False
        if not found:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, len(FACE_KEYPOINTS), 2))
        faces = np.concatenate([f for f, _, _ in found])
        scores = np.concatenate([s for _, s, _ in found])
        kps = np.concatenate([k for _, _, k in found])
        keep = nms(faces, scores, self.nms_iou, self.nms_overlap)
        return faces[keep], scores[keep], kps[keep]

    def _window(self, face: np.ndarray, size: float, w: int, h: int) -> tuple[int, int, int]:
        """(x0, y0, side) of the square window around one hinted face of size ``size``
        (:func:`engine.face_detector.face_size`), inside a w x h frame."""
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
    keypoints come back in frame pixels, so that :func:`engine.detector.face_roll` of the
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
        that bring each face's roll (``rolls`` (N,) radians, the :func:`engine.detector.face_roll`
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
        if not out:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, len(FACE_KEYPOINTS), 2))
        faces = np.concatenate([f for f, _, _ in out])
        scores = np.concatenate([s for _, s, _ in out])
        kps = np.concatenate([p for _, _, p in out]).reshape(len(faces), len(FACE_KEYPOINTS), 2)
        keep = nms(faces, scores, self.nms_iou, self.nms_overlap) if len(faces) else np.zeros(0, np.int64)
        return faces[keep], scores[keep], kps[keep]

    def close(self) -> None:
        """Close the wrapped face detectors (each once)."""
        seen = set()
        for s in self.searches.values():
            inner = getattr(s, "face_detector", s)
            if id(inner) not in seen:
                seen.add(id(inner))
                s.close()
