"""Persons across frames: the tracker (detections matched to tracks, confirmation of new
persons, holding of lost ones, tracking by pose).

- :class:`PersonTracker` and its :class:`Track`; :func:`max_weight_assignment` pairs tracks
  with detections. Whether an estimate is a person is :mod:`engine.tracking.verify`'s; the
  detections come from :mod:`engine.detection`.

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
  ghost beside its person); without verification it draws it at its last b0. A track the caller
  reports *hidden* behind another person (``observe(..., hidden=True)``) is held, and matched,
  where its velocity takes it instead;
- a confirmed track dropped as lost (its hold or ``max_undetected_seconds`` over; not one the
  caller drops or the capacity lets go) is remembered for ``reid_seconds``: a new track that
  starts :func:`near` it, in that frame or a later one, takes its id (while no live track has
  it), and is confirmed as any other before it is drawn. A person who comes out from behind
  a pillar or back into the frame so keeps his id, though his motion while unseen is not known
  (a pose's box jitters too much to carry it). A lost track still held keeps its id: handing it
  to a new track near it (the one whose ids the duplicate rule checks) let a wrong figure on
  walking.mp4's stairs survive for 20 frames with ``--model body``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import B0Source
from ..detection.boxes import box_iou

REID_REACH = 1.25
"""How far from a lost track's last good b0 a new track's first b0 may be to take its id
(:func:`near`): centres at most this many box sides apart. The walker of
``tools.eval.crossing``'s pillar clip, hidden for about 20 frames, came out 273 px on, his new
b0 271 x 496 px."""

SIZE_DECAY = 0.97
"""Per frame, how much of a person's largest box size (:attr:`Track.size`) is kept."""

REID_SIZE = 2.5
"""... and their sizes (square root of the box area; for the lost track its :attr:`Track.size`)
within this factor of each other (a face's b0 is not a pose's: 367 px against the walker's 250 or
so before the pillar; his last good box had shrunk to 166 px as it covered him)."""


def near(box: np.ndarray, other: np.ndarray, other_size: float | None = None) -> bool:
    """Whether box (4,) (cx, cy, w, h) is near enough to ``other`` (4,) to be the same person
    seen again after a while unseen: centres at most :data:`REID_REACH` times the larger box's
    longer side apart, sizes (square roots of the areas) within :data:`REID_SIZE` of each other.
    ``other_size``: the size to take for ``other`` (default its own; a lost person's
    :attr:`Track.size`, as his last box shrank while something covered him)."""
    size = np.sqrt(box[2] * box[3])
    other_size = np.sqrt(other[2] * other[3]) if other_size is None else float(other_size)
    reach = REID_REACH * max(box[2], box[3], other[2], other[3], other_size)
    return bool(np.hypot(*(box[:2] - other[:2])) <= reach
                and max(size, other_size) <= REID_SIZE * min(size, other_size))


@dataclass
class _Lost:
    """A confirmed track dropped as lost, remembered for re-identification."""

    track_id: int
    box: np.ndarray            # (4,) its last good b0, pixels
    size: float | None         # its Track.size, pixels (None: unknown)
    time: float                # when it ended, seconds


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
        misses: frames since it was last detected or verified (by frame index: frames a live
            source dropped count too; ``max_hold_seconds`` bounds the hold in time as well).
        last_face: (4,) the last face box it was matched on (detected or from its pose), pixels,
            or None; the face search looks around it.
        last_face_frame: index of the frame ``last_face`` is from.
        hits: frames it was detected (and verified) in.
        first_frame: index of the frame it started in.
        confirmed: detected in ``confirm_hits`` frames: drawn from then on.
        angle: roll of this frame's b0, radians (0: upright).
        next_b0, next_face, next_angle: the b0, face and roll its last verified pose implies
            for the next frame (tracking by pose), or None.
        good_b0, good_angle: the last b0 (and roll) whose pose verified: what a held track uses
            (a hidden one moved on by ``velocity`` for each frame since).
        size: how large its person is, pixels: the largest square root of a good b0's area, each
            frame since worth :data:`SIZE_DECAY` less (a box that shrinks as something covers
            him does not make him smaller at once); 0 before the first.
        velocity: (2,) how far its b0's centre moves per frame, pixels: an exponential average,
            each new move from b0 to the next b0 of a verified pose weighing a half; None
            before the first.
        hidden: missed because another person is in front of it (:meth:`PersonTracker.observe`):
            while lost, it is looked for and held where its velocity takes it, not where it was.
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
        sure: its last estimate showed its person (the caller's judgement, e.g. enough sure
            joints; True until told otherwise): while it is not, a detection matched to it gives
            the frame's b0 even when the tracker does not ``anchor``.
    """

    track_id: int
    b0: np.ndarray
    face: np.ndarray | None
    score: float
    source: B0Source
    last_seen_frame: int
    last_seen_time: float
    misses: int = 0
    last_face: np.ndarray | None = None
    last_face_frame: int = 0
    hits: int = 1
    first_frame: int = 0
    confirmed: bool = False
    angle: float = 0.0
    next_b0: np.ndarray | None = None
    next_face: np.ndarray | None = None
    next_angle: float = 0.0
    good_b0: np.ndarray | None = None
    good_angle: float = 0.0
    size: float = 0.0
    velocity: np.ndarray | None = None
    hidden: bool = False
    detected: bool = False
    verified: bool = False
    age: int = 1
    last_detected_time: float = 0.0
    pending_hit: bool = False
    first_step: int = 0
    detection: int | None = None
    sure: bool = True


def _moved(box: np.ndarray | None, track: Track, frames: int) -> np.ndarray | None:
    """``box`` (4,) (cx, cy, w, h) with its centre moved on by ``track``'s velocity for ``frames``
    if it is hidden (where it was if not: the velocity of a person standing still is the jitter of
    his poses' boxes, and it carried held boxes off him)."""
    velocity = track.velocity if track.hidden else None
    if box is None or velocity is None:
        return box
    out = np.asarray(box, dtype=np.float64).copy()
    out[:2] += velocity * frames
    return out


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
            longest-tracked ones are kept.
        reid_seconds: how long a confirmed track dropped as lost keeps its id for a new track
            that starts where it was (2.0 s; 0: never), see the module docstring.
    Raises:
        ValueError: ``max_confirmed`` below 1.
    """

    def __init__(self, iou_threshold: float = 0.2, max_hold_frames: int = 15, max_hold_seconds: float = 0.5,
                 confirm_hits: int = 3, confirm_frames: int = 5, anchor: bool = True,
                 max_undetected_seconds: float | None = 1.0, max_confirmed: int | None = None,
                 reid_seconds: float = 2.0):
        self.iou_threshold = float(iou_threshold)
        self.max_hold_frames = int(max_hold_frames)
        self.max_hold_seconds = float(max_hold_seconds)
        self.confirm_hits = max(1, int(confirm_hits))
        self.confirm_frames = max(self.confirm_hits, int(confirm_frames))
        self.anchor = bool(anchor)
        self.max_undetected_seconds = None if max_undetected_seconds is None else float(max_undetected_seconds)
        self.max_confirmed = max_confirmed
        self.reid_seconds = float(reid_seconds)
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
        self._lost: list[_Lost] = []
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
            self._lost = [lost for lost in self._lost if lost.track_id != tr.track_id]   # its id is taken up

    def _remember(self, tr: Track, t: float) -> None:
        """A track that ends at time ``t`` as lost: a confirmed one is remembered for
        ``reid_seconds`` (see the module docstring)."""
        if tr.confirmed and self.reid_seconds > 0:
            box = tr.good_b0 if tr.good_b0 is not None else tr.b0
            self._lost.append(_Lost(tr.track_id, np.asarray(box, np.float64).copy(), tr.size or None, t))

    def _new_id(self, box: np.ndarray, used: set[int]) -> int:
        """The id of a new track whose first b0 is ``box`` (4,): that of the most recently lost
        track remembered (see the module docstring) that no live track has (``used``) and that it
        is :func:`near`, or the next new one."""
        for lost in sorted(self._lost, key=lambda lost: -lost.time):
            if lost.track_id not in used and near(box, lost.box, lost.size):
                return lost.track_id
        self._next_id += 1
        return self._next_id - 1

    def update(self, b0: np.ndarray, faces: np.ndarray | None = None, scores: np.ndarray | None = None,
               timestamp: float | None = None, sources: list[B0Source] | None = None,
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

        self._lost = [lost for lost in self._lost if t - lost.time <= self.reid_seconds + 1e-9]
        matched_det: dict[int, Track] = {}
        if n and self.tracks:
            # a hidden track is looked for where its motion has taken it since it was last seen
            tb0 = np.stack([tr.next_b0 if tr.next_b0 is not None
                            else _moved(tr.good_b0, tr, self._frame - tr.last_seen_frame)
                            if tr.hidden and tr.good_b0 is not None else tr.b0 for tr in self.tracks])
            # observe() keeps it at the pose-implied face
            tface = [tr.last_face if tr.next_b0 is not None else _moved(tr.last_face, tr, self._frame - tr.last_face_frame)
                     for tr in self.tracks]
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

        # the tracks no detection matched go on, are held or end (a confirmed one is remembered:
        # a new track below may take his id)
        taken = {id(tr) for tr in matched_det.values()}
        present: list[Track] = []
        for tr in self.tracks:
            if id(tr) in taken:
                continue
            tr.detected = tr.pending_hit = False
            tr.detection = None
            if tr.next_b0 is not None:
                if self.max_undetected_seconds is not None and t - tr.last_detected_time > self.max_undetected_seconds + 1e-9:
                    self._remember(tr, t)
                    continue
                tr.b0, tr.face, tr.angle, tr.source = tr.next_b0, tr.next_face, tr.next_angle, "pose"
                present.append(tr)
                continue
            tr.misses = self._frame - tr.last_seen_frame   # frames since seen, this one included
            if (tr.confirmed and tr.misses <= self.max_hold_frames
                    and t - tr.last_seen_time <= self.max_hold_seconds + 1e-9):
                tr.source, tr.face = "held", None
                if tr.good_b0 is not None:
                    tr.b0, tr.angle = _moved(tr.good_b0, tr, tr.misses), tr.good_angle
                present.append(tr)
            else:
                self._remember(tr, t)
        used = {tr.track_id for tr in present} | {tr.track_id for tr in matched_det.values()}
        for i in range(n):
            face = None if faces_arr is None or sources[i] != "face" else faces_arr[i].copy()
            tr = matched_det.get(i)
            if tr is None:
                tid = self._new_id(b0[i], used)
                used.add(tid)
                tr = Track(tid, b0[i].copy(), face, float(scores_arr[i]), sources[i], self._frame, t,
                           last_face=face, last_face_frame=self._frame, first_frame=self._frame,
                           angle=float(angles_arr[i]),
                           hits=0 if pending else 1, last_detected_time=t, first_step=self._step,
                           confirmed=sources[i] == "frame")   # the whole frame is no face to confirm
            else:
                tr.score = float(scores_arr[i])
                tr.last_detected_time = t
                if tr.next_b0 is not None and not self.anchor and tr.sure:   # followed by pose: the detection confirms it
                    tr.b0, tr.face, tr.angle, tr.source = tr.next_b0, tr.next_face, tr.next_angle, "pose"
                else:
                    tr.b0, tr.face, tr.angle, tr.source = b0[i].copy(), face, float(angles_arr[i]), sources[i]
                if face is not None:
                    tr.last_face, tr.last_face_frame = face, self._frame
                if not pending:
                    tr.hits += 1
                    tr.last_seen_frame, tr.last_seen_time, tr.misses = self._frame, t, 0
            tr.detected, tr.pending_hit, tr.detection = True, pending, i
            self._confirm(tr)
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
            if len(confirmed) >= self.max_confirmed:   # the longest tracked first (a re-identified id is no age)
                keep = {id(tr) for tr in sorted(confirmed, key=lambda tr: tr.first_step)[: self.max_confirmed]}
                kept = [tr for tr in kept if id(tr) in keep]
        self.tracks = kept
        return list(kept)

    def observe(self, track: Track, ok: bool, next_b0: np.ndarray | None = None,
                next_face: np.ndarray | None = None, next_angle: float = 0.0, timestamp: float | None = None,
                hidden: bool = False) -> None:
        """Report whether this frame's estimate of a track (returned by the last :meth:`update`)
        is a person.

        Args:
            track: the track.
            ok: the estimate verified (see :class:`engine.tracking.verify.PoseVerifier`).
            next_b0, next_face, next_angle: the b0 (4,), face box (4,) and roll (radians) the
                pose implies for the next frame (tracking by pose); None: no prediction (the
                track is matched on its last face, and held when no detection matches it).
            timestamp: the frame's time in seconds (default: frame index / 30).
            hidden: with ``ok`` False, the estimate was missed because another person is in
                front (e.g. their bodies overlap): the track is held where its motion takes it.
        Effects:
            ok: a detection of this frame becomes a hit (a tentative track may be confirmed),
            the track is seen now, and ``next_*`` are stored. Not ok: a tentative track is
            dropped; a confirmed one is missed in this frame (held from the next frame on,
            unless a detection matches it again).
        """
        t = self._frame / 30.0 if timestamp is None else float(timestamp)
        track.verified = bool(ok)
        track.hidden = not ok and (bool(hidden) or track.hidden)   # hidden until seen again
        if ok:
            if track.pending_hit:
                track.hits += 1
                track.pending_hit = False
                self._confirm(track)
            if next_b0 is not None and track.source == "pose":   # b0 from the last pose: the move of one frame
                move = np.asarray(next_b0, dtype=np.float64)[:2] - np.asarray(track.b0, dtype=np.float64)[:2]
                track.velocity = move if track.velocity is None else (track.velocity + move) / 2
            track.last_seen_frame, track.last_seen_time, track.misses = self._frame, t, 0
            track.good_b0, track.good_angle = np.asarray(track.b0, dtype=np.float64).copy(), float(track.angle)
            track.size = max(float(np.sqrt(track.good_b0[2] * track.good_b0[3])), SIZE_DECAY * track.size)
            track.next_b0 = None if next_b0 is None else np.asarray(next_b0, dtype=np.float64).copy()
            track.next_face = None if next_face is None else np.asarray(next_face, dtype=np.float64).copy()
            track.next_angle = float(next_angle)
            if track.next_face is not None:
                track.last_face, track.last_face_frame = track.next_face, self._frame
            return
        track.next_b0, track.next_face = None, None
        if not track.confirmed:
            self.drop(track)
            return
        # a frame is missed once: update() may have counted this one already (a held track)
        track.misses = self._frame - track.last_seen_frame

    def drop(self, track: Track) -> None:
        """Forget a track (e.g. a duplicate of another person)."""
        self.tracks = [tr for tr in self.tracks if tr is not track]
