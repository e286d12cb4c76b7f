"""One frame's path, shared by the video command and the desktop app:

    frame (H, W, 3) uint8 BGR
      -> person detector (faces -> b0 via the model's face scaler), run only when needed:
         every ``detect_every`` frames to find newcomers, or when a person is new or lost;
         once ``max_persons`` are tracked, every ``recheck_every`` frames, around their faces
      -> tracker (detections matched to tracks by face overlap; a tracked person's b0 comes
         from its previous pose: the face its eyes and nose imply, through the scaler)
      -> cascade (all persons of the frame through each stage in one batch, Sec. 3.2)
      -> verification (the cascade checks its own candidates: the predicted eyes and nose must
         land on the face b0 came from, with the shoulders below it; duplicates and "faces"
         on another person's body are dropped; a new person is drawn once confirmed)
      -> One-Euro smoothing per person (optional)
      -> :class:`FrameResult`

This is MediaPipe's detector-then-tracker scheme with DeepPose's cascade as the tracker. With a
psi v2 model (``weights/body``) persons are tracked by body instead (``track_by_body``): the next
b0 is the box around the pose, turned with the torso, a person stays while stage 1's presence
score holds, and while nobody tracked is shown the whole frame is searched in four turns (a person
too unsure to show takes the b0 of a detection matched to him) and a person shown in the last
frame whose box reads nobody is estimated again from the b0 that showed him. Of two persons whose
bodies overlap the younger is a duplicate, unless their faces were seen apart, or he was followed
for a second before: then he is hidden behind the other and held where his motion takes him.

:class:`PosePipeline` is built from one :class:`engine.config.PipelineConfig`
(``PosePipeline(config)``, the only place where options become a backend, a tracker and a
detector) and owns the model, the detector, the tracker and the per-person filters.
It is not thread-safe (one thread calls :meth:`PosePipeline.process`), but ``stages`` and
``smooth`` may be set from another thread at any time: they are read once per frame
(:meth:`PosePipeline.apply` sets every live option of a config).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .config import LIVE_OPTIONS, PipelineConfig
from .constants import MIN_JOINT_CONFIDENCE, B0Source
from .detection.boxes import box_iou, box_overlap
from .detection.faces import face_roll, face_size
from .detection.persons import (
    FaceScaler,
    PersonBoxes,
    body_box,
    frame_box,
    joints_face,
    torso_roll,
    turn_angles,
)
from .detection.protocols import FaceSearch, PersonFinder
from .detection.search import TrackingFaceDetector, TurnedFaceSearch
from .smoothing import OneEuroFilter
from .tracking.protocols import Tracker, Verifier
from .tracking.tracker import PersonTracker
from .tracking.verify import PoseVerifier, VerifyParams, on_bodies

log = logging.getLogger(__name__)

FACE_SEARCH_TILE = 480
"""Tile side of the pipeline's face search (:class:`engine.detection.search.TrackingFaceDetector`): a
25 px face of a 1280x720 frame is 10 px in BlazeFace's 192 px input (7.5 px with 640 px tiles,
which it misses). On walking.mp4 (hand counts, tests/data/walking_persons.json) recall of
visible faces rose from 0.34 to 0.57 at precision 1.0 (same settings otherwise)."""

WINDOW_MIN_CONFIDENCE = 0.45
"""Least score of a face found in a window around a tracked face (tiles keep 0.7). Where a person
is kept by his face (psi v1 models), he is dropped after a second with no face detection
(:class:`engine.tracking.tracker.PersonTracker`'s ``max_undetected_seconds``), and the small
faces of people seated in the background score 0.45-0.85 from frame to frame in those windows
(walking.mp4). False faces on hands score up to 0.58 there, but a detection only adds to a track
whose pose the cascade verifies. On walking.mp4 (everyone, ``flic``) recall of the counted faces
rose from 0.552 at 0.6 to 0.690 at 0.45, precision 1.000 in every frame at both. Where persons
are tracked by body (psi v2) each face found again is another try from a b0 around that face: on
walking.mp4's bench the figure from the face of the man seated partly behind another lay on the
other man (dropped as his duplicate) in frames 1 to 18, and was his own from frame 19 on (with
:data:`FACE_SEARCH_FIRST_TILE`: see there; not with ``rotate``: see
:data:`WINDOW_MIN_CONFIDENCE_TURNED_BODY`)."""

FACE_SEARCH_FIRST_TILE = 320
"""Side of the finer tiles the face search also scans on the first frame of a large video (or
after a reset): in 480 px tiles the 36-44 px faces of people seated in walking.mp4's background
score 0.26-0.72 against the tiles' 0.7, in 320 px tiles 0.5-0.79, so three of them were first
found 2 to 12 frames in (recall of the counted faces 0.776 -> 0.828, precision 1.000 in every
frame). The cost is once a video (and, in still-image mode, once a large image): 15 more
BlazeFace calls at 1280x720, about 40 ms, 40 at 1920x1080, each turn with ``rotate``. The same
when tracking by body (psi v2) without ``rotate`` (with it see
:data:`WINDOW_MIN_CONFIDENCE_TURNED_BODY`), with :data:`WINDOW_MIN_CONFIDENCE`: walking.mp4,
everyone followed, recall of the counted faces 0.586 -> 0.724, precision 1.000 (over all frames
414 of 419 -> 505 of 515 figures on a counted person; the ten: the walker in the last frames, and
8 frames of the woman on the stairs seen from behind, her face not counted, in 7 of them with at
most four joints shown). Both had been off for body tracking since persons kept by presence alone
drew figures beside the heads on the stairs (over all frames 0.924), before the flip guard and
the refined joints' confidence."""

FACE_SEARCH_WINDOWS = 8
"""Most windows around tracked small faces per face search (the search's own default is 4): on
walking.mp4 five small faces are tracked at once, and a tracked face with no window is not
found again, so its person is dropped after a second (recall of the counted faces, with the video
command's lookahead, 0.724 with 4, 0.776 with 6 or 8; detection 27.7 -> 30.8 ms a frame on
average, everyone followed)."""

WINDOW_MIN_CONFIDENCE_TURNED_BODY = 0.6
""":data:`WINDOW_MIN_CONFIDENCE` where persons are tracked by body and also searched turned
(``rotate``), with no :data:`FACE_SEARCH_FIRST_TILE` tiles: there four searches (one a turn) each
accept faces, and a person's b0 turns with whatever torso his first estimate has. On walking.mp4
(everyone, ``--model body --rotate``) the psi v1 models' settings raised recall of the counted
faces from 0.534 to 0.603, but precision over the hand-counted frames fell from 1.000 to 0.947
(over all frames 0.988 to 0.881): from the face of a young man seated behind another on the
stairs, a figure turned with a wrong torso stayed on nobody for 50 frames, and a 13 px "face"
found turned by 90 degrees there gave a figure lying across the man in front for 6."""

BODY_FACE_RATIO = 1.25
"""A face on the body of a person whose face is this much larger is not a person's face."""

KEEP_PRESENCE = 0.5
"""Tracking by body (psi v2 models): a person's estimate stands while stage 1's presence score
for his b0 is at least this; below it he is missed in that frame (and dropped once missed for
the tracker's hold time)."""

FIND_PRESENCE = 0.85
"""Tracking by body: the whole-frame search's best pose (:func:`search_boxes`) starts a person
(found without a face) when its presence score is at least this. Measured with a psi v2 snapshot
on walking.mp4 cuts (640 px, every 4th frame): the whole frame turned the person's way up scored
a median 0.91-0.92 (walker
upright with his head cut off, turned 90 and 180 degrees), turned another way at most 0.79, and
a cut with nobody in it (bench and pavement) at most 0.39 in any turn."""

FRAME_SEARCH_EVERY = 3
"""Tracking by body: while nobody tracked showed his joints in the last frame
(:func:`shows_joints`; nobody tracked, or every tracked person too unsure), whether faces are
found or not, the whole frame and three squares along it (:func:`search_boxes`) are tried as b0
on every N-th frame (one stage-1 run of four crops), turned by each of
:data:`FRAME_SEARCH_TURNS` in turn: every turn within 12 frames (0.4 s at 30 fps). The first
search of a video (or after a reset) tries every turn at once, so that a person lying or upside
down at the start is found in its first frame."""

FRAME_SEARCH_TURNS = (0.0, np.pi, np.pi / 2, -np.pi / 2)
"""The turns of the whole-frame b0 (radians, :func:`engine.geometry.crop_boxes` convention):
upright, upside down, lying either way."""

BODY_UPRIGHT_ROLL = 20.0
"""Tracking by body: b0 turns with the torso by the part of its roll beyond this many degrees
(:func:`body_angles`): psi v2 trained on crops turned by up to 20 degrees, so the crop always
shows the torso within that of upright, and the turn has no jump where turning starts (only
across upside down, where a roll of +-180 degrees gives +-160)."""

SIDE_SWAP_RATIO = 0.8
"""Tracking by body: a person's left and right joints are swapped (:meth:`PosePipeline._keep_sides`)
when the swapped pose is this much nearer his previous one than the pose as given. psi v2 cannot
always tell a person facing the camera from one facing away, and on walking.mp4 its left and right
changed places from frame to frame: smoothed, the figure collapsed onto one line."""

DUPLICATE_BODY_IOU = 0.5
"""Tracking by body: of two persons whose next b0 overlap this much (IoU), or one of which lies
:data:`DUPLICATE_BODY_INSIDE` inside the other, the younger is a duplicate, unless their faces were
seen apart (:meth:`PosePipeline._two_persons`) or he is hidden behind the other
(:data:`HIDDEN_AFTER_FRAMES`)."""

HIDDEN_AFTER_FRAMES = 30
"""Tracking by body: a confirmed person this many frames old (``Track.age``: frames since he was
first found, tentative and held ones included) whose body comes to overlap an older
one's (the duplicate rule) is hidden behind him, not a duplicate: he is missed, and held where
his motion takes him (:class:`engine.tracking.tracker.PersonTracker`) until he comes out again
or his hold ends (``python -m deeppose.tools.eval.crossing``: two people crossing; with the
velocity of every lost person, not only a hidden one, a standing person's held box drifted off
him on walking.mp4, and a 30-frame hold let one figure onto nobody there)."""

HIDDEN_MIN_SIZE = 0.7
"""Tracking by body: a person hidden behind another (:data:`HIDDEN_AFTER_FRAMES`) is seen again only
by an estimate whose box is at least this share of his size (``Track.size``); a smaller one is
missed and he stays held where his motion takes him. In ``tools.eval.crossing`` a face found at
the edge of the front walker, 5 frames after the one behind was hidden, gave the hidden one a
figure about half his size there (a box of 258 px against his 466); his held box then stayed on
it while he walked on behind the other, and he came out 160 px away as a new person. With it he
keeps his id; walking.mp4 (also mirrored, with ``rotate``, and its eight variants of
docs/PSI_V2.md) and the first 20 animated LSP clips read the same as without it."""

DUPLICATE_BODY_INSIDE = 0.6
"""Tracking by body: the share of the smaller of two next b0 that lies inside the larger beyond
which they are one person (on walking.mp4 a small box on a seated man's face inside the box of
his body made a second figure on him)."""


def search_boxes(width: int, height: int, turn: float) -> list[np.ndarray]:
    """The b0 boxes of the whole-frame search (tracking by body) for one turn: the whole frame
    (its sides swapped for a quarter turn, so that the turned box covers it) and three squares of
    the frame's short side along its long side (left, middle, right; top, middle, bottom), where a
    person who fills the frame's height is larger and centred.

    Args:
        width, height: the frame's size, pixels.
        turn: the boxes' roll, radians (one of :data:`FRAME_SEARCH_TURNS`).
    Returns:
        Four (4,) boxes (cx, cy, w, h), pixels; one (the frame) for a square frame.
    """
    whole = frame_box(width, height)
    if abs(abs(turn) - np.pi / 2) < 1e-6:
        whole[2:] = whole[3], whole[2]
    side = float(min(width, height))
    span = max(width, height) - side
    if span < 1:   # a square frame: the squares are the frame itself
        return [whole]
    squares = []
    for f in (0.0, 0.5, 1.0):
        c = side / 2 - 0.5 + f * span
        cx, cy = (c, (height - 1) / 2) if width >= height else ((width - 1) / 2, c)
        squares.append(np.array([cx, cy, side, side]))
    return [whole, *squares]


def body_angles(poses: np.ndarray, skeleton) -> np.ndarray:
    """b0 rolls for tracking by body: the torso's roll (:func:`engine.detection.persons.torso_roll`) less
    :data:`BODY_UPRIGHT_ROLL` towards 0, so exactly 0 (an upright crop) within it.

    Args:
        poses: (P, k, 2) poses, pixels.
        skeleton: their skeleton (needs shoulders and hips; else 0).
    Returns:
        (P,) radians, the :func:`engine.geometry.crop_boxes` convention.
    """
    return roll_beyond_upright(torso_roll(poses, skeleton))


def roll_beyond_upright(roll: np.ndarray) -> np.ndarray:
    """The part of torso rolls (radians; NaN: 0) beyond :data:`BODY_UPRIGHT_ROLL`, towards 0."""
    roll = np.nan_to_num(np.asarray(roll, dtype=np.float64))
    dead = np.radians(BODY_UPRIGHT_ROLL)
    return roll - np.clip(roll, -dead, dead)


MAX_TURN_PER_FRAME = 30.0
"""Tracking by body: a person's b0 turns by at most this many degrees from one frame to the next
(:func:`turn_at_most`). People turn far slower (a cartwheel, about 360 degrees a second, is 12 a
frame at 30 fps); a pose that came out upside down for a frame would otherwise turn the next b0
upside down with it, and psi v2, shown the person upside down, kept the wrong figure."""

FLIP_ROLL = 90.0
"""Tracking by body: an estimate whose torso is turned more than this many degrees from its own
b0 (the roll the person had) is a flipped pose, not the person: he is missed in that frame (held
in his last good b0). On walking.mp4 a woman on the stairs, seen from behind, came out head down
again and again over a second (with the int8 stage 2: a figure on nobody by the hand-counted heads
in 8 frames from 96 to 130); a person really turning over turns his b0 with him a few degrees a
frame."""

MIN_JOINTS_SHOWN = 3
"""A tracked person of a model with joint confidences (psi v2) is reported in a frame (drawn,
written to the keypoints, returned) only when at least this many of his joints reach
:data:`engine.constants.MIN_JOINT_CONFIDENCE`; below it he is still tracked, and shown again once
his joints are sure (the full-frame fallback's person, asked for, is always reported). On an mp4v
encoding of walking.mp4 mirrored, everyone followed with the body model, a person held
on the seated pair at the top edge came out as a figure with every joint under 0.04 for 55
frames: nothing drawn, but a person in the keypoints (hand-counted precision 0.867, over all
frames 0.947). With this rule 1.000 and 0.994, recall unchanged (0.655), and walking.mp4 itself
unchanged (precision 1.000, recall 0.724; over all frames 0.981 -> 0.990). It decides what is
reported, not whom the tracker keeps: the same count in the keep decision of tracking by body
(an estimate missed below it) changed which background people were kept and drew a figure on
nobody on walking.mp4 (precision 0.946, recall 0.603). The same count as the animated clips'
"with 3 or more joints shown" (``tools.eval.animate``)."""


def shows_joints(confidence: np.ndarray) -> bool:
    """Whether a person with these joint confidences (k,) in [0, 1] is reported: at least
    :data:`MIN_JOINTS_SHOWN` of them reach :data:`engine.constants.MIN_JOINT_CONFIDENCE`, or the
    model gives none (all NaN: psi v1, every joint drawn)."""
    c = np.asarray(confidence, dtype=np.float64)
    return not np.isfinite(c).any() or int((np.nan_to_num(c) >= MIN_JOINT_CONFIDENCE).sum()) >= MIN_JOINTS_SHOWN


def wrapped(angle: np.ndarray) -> np.ndarray:
    """Angles (radians, any shape) wrapped to [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def turn_at_most(was: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Rolls (radians) that go from ``was`` towards ``want`` by at most
    :data:`MAX_TURN_PER_FRAME` degrees, the short way round; (P,) each."""
    step = np.radians(MAX_TURN_PER_FRAME)
    return wrapped(was + np.clip(wrapped(want - was), -step, step))


@dataclass
class PersonResult:
    """One person's pose in one frame.

    Attributes:
        track_id: the person's id, stable across frames while tracked (0 for the full-frame
            fallback person).
        b0: (4,) the person box (cx, cy, w, h) stage 1 cropped, pixels.
        face: (4,) the face box b0 was derived from, pixels: detected in this frame (source
            "face") or implied by the previous frame's eyes and nose (source "pose"); None
            when held or full-frame.
        b0_source: "face" (from a face detected in this frame), "pose" (tracked by pose: from
            the eyes and nose of the person's previous pose, or with tracking by body from the
            box around it), "held" (the last good b0 of a person lost in the previous frame, or
            with tracking by body that of his last shown estimate where the box around his pose
            read nobody),
            "body" (found without a face: the box around the pose the whole frame gave) or
            "frame" (the whole frame, fallback).
        angle: roll of b0 in radians (0: upright; rotated b0, see :attr:`engine.config.PipelineConfig.rotate`).
        stage_poses: (S, k, 2) raw cascade output of each stage run, pixels (with tracking by
            body, left and right joints kept on the sides of the person's previous frame).
        pose: (k, 2) final pose in pixels: the last stage, One-Euro smoothed when smoothing
            is on.
        score: how sure the pipeline is that a person is there, in [0, 1]: with tracking by
            body the presence score of this frame's b0 (psi v2's presence head), otherwise the
            face detection score (of the last detection for a held person); for the full-frame
            fallback (track_id 0), the presence score with a psi v2 model, else 1.
        smoothed: whether ``pose`` is smoothed.
        confidence: (k,) each joint's confidence in [0, 1] from the last cascade stage
            (:attr:`engine.cascade.CascadeResult.confidence`, psi v2 models); NaN per joint, or
            None, where the model gives none (psi v1: the shipped models). Not smoothed.
    """

    track_id: int
    b0: np.ndarray
    face: np.ndarray | None
    b0_source: B0Source
    stage_poses: np.ndarray
    pose: np.ndarray
    score: float = 1.0
    smoothed: bool = False
    angle: float = 0.0
    confidence: np.ndarray | None = None

    @property
    def stage(self) -> int:
        """The cascade stage (1-based) ``pose`` comes from."""
        return int(self.stage_poses.shape[0])


@dataclass
class FrameResult:
    """Everything the pipeline found in one frame.

    Attributes:
        index: frame index since the last :meth:`PosePipeline.reset` (or as given).
        timestamp: frame time in seconds (video time, or seconds since the first live frame).
        persons: one :class:`PersonResult` per person (empty when nobody is in the frame); with
            joint confidences (psi v2), a tracked person only while he shows
            :data:`MIN_JOINTS_SHOWN` sure joints.
        detect_seconds: person detection time, seconds.
        stage_seconds: per stage run, wall time (crop + regress + update), seconds.
        total_seconds: the whole of :meth:`PosePipeline.process`, seconds.
        backend: the runtime backend's name.
        frame_size: (width, height) of the frame, pixels.
        stages: cascade stages run on this frame (1..S).
        detected: whether the face detector ran on this frame.
        tentative: persons found but not yet confirmed (a new track is drawn once detected in
            ``confirm_hits`` frames; see :class:`engine.tracking.tracker.PersonTracker`) whose
            estimate in this frame is kept (verified; with tracking by body, present and no
            duplicate) and shows :data:`MIN_JOINTS_SHOWN` sure joints, smoothed as drawn persons
            are (each person's filter starts at his first estimate). Not drawn: a video file's frame loop
            (:class:`engine.frames.FrameLoop` with ``lookahead``) moves them into ``persons``
            once their track is confirmed, so that a person appears from his first frame.
    """

    index: int
    timestamp: float
    persons: list[PersonResult]
    detect_seconds: float
    stage_seconds: list[float]
    total_seconds: float
    backend: str
    frame_size: tuple[int, int] = (0, 0)
    stages: int = 0
    detected: bool = True
    tentative: list[PersonResult] = field(default_factory=list)


def face_search(face_detector, turned_body: bool = False) -> TrackingFaceDetector:
    """The multi-scale face search of the app, the video command, evaluation and training:
    :class:`engine.detection.search.TrackingFaceDetector` over ``face_detector`` with
    :data:`FACE_SEARCH_TILE` px tiles on large frames (and :data:`FACE_SEARCH_FIRST_TILE` px ones on
    the first), five 0.6-size tiles on frames up to 720 px, up to :data:`FACE_SEARCH_WINDOWS`
    windows around known small faces, whose hits must score :data:`WINDOW_MIN_CONFIDENCE`, and
    nested boxes (one face found at two scales) merged into one. ``turned_body`` (persons tracked
    by body with ``rotate``): windows at :data:`WINDOW_MIN_CONFIDENCE_TURNED_BODY` and no finer
    first tiles."""
    return TrackingFaceDetector(face_detector, tile=FACE_SEARCH_TILE, max_rois=FACE_SEARCH_WINDOWS,
                                window_min_confidence=WINDOW_MIN_CONFIDENCE_TURNED_BODY if turned_body
                                else WINDOW_MIN_CONFIDENCE,
                                first_tile=None if turned_body else FACE_SEARCH_FIRST_TILE, nms_overlap=0.6)


class _Fixed:
    """A :class:`PosePipeline` option fixed when it is built: read-only, from its resolved
    config (the live options, :data:`engine.config.LIVE_OPTIONS`, are attributes of their own)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, pipeline, owner=None):
        return self if pipeline is None else getattr(pipeline._config, self.name)

    def __set__(self, pipeline, value) -> None:
        raise AttributeError(f"{self.name} is fixed when the pipeline is built: build a new one "
                             "(engine.config.PipelineConfig.needs_rebuild)")


class PosePipeline:
    """Frames in, poses out: person detection, tracking, the cascade and smoothing.

    Built from one :class:`engine.config.PipelineConfig` (its attributes document every option),
    here and nowhere else: the constructor loads the model on the config's backend, resolves
    the options the model decides (:meth:`engine.config.PipelineConfig.resolved`) and makes the
    tracker and the person detector. The video command, the app, the benchmark and
    :class:`engine.api.Pose` all build their pipeline so.

    What the options do here:

    - ``detect_every`` / ``recheck_every``: with tracking by pose the face detector runs every
      N-th frame to find newcomers (and on any frame where a person is new or lost); once
      ``max_persons`` are tracked, only every ``recheck_every`` frames (at least three times per
      tracker's ``max_undetected_seconds``, so that a slow source keeps its tracks) and only in
      windows around the tracked faces: a webcam user alone in view (MediaPipe's ``num_poses``
      1) pays for one person, not for faces in the background. Once ``max_persons`` are
      confirmed they keep their places while tracked; newly found faces wait until one is lost.
    - ``track_by_pose``: the next frame's b0 comes from the face the predicted eyes and nose
      imply (:func:`engine.detection.persons.joints_face`, the scaler's fitted "joints_face"
      model) enlarged by the scaler. Random or untrained weights predict no face to follow or to
      verify, so they get the plain tracker (every detection drawn once confirmed).
    - ``verify``: every estimate is checked by :class:`engine.tracking.verify.PoseVerifier`
      (duplicates and faces found on another person's body dropped; a detection counts only
      once its pose verifies).
    - ``track_by_body`` (psi v2 models, whose stage 1 says whether b0 holds a person): the next
      b0 is the box around the pose (:func:`engine.detection.persons.body_box`), turned with the
      torso (:func:`body_angles`); a person stays while the presence score is at least
      :data:`KEEP_PRESENCE`, however his face looks, and a detection only confirms him. While
      nobody is tracked and no face is found, the whole frame and squares along it are tried as
      b0 every :data:`FRAME_SEARCH_EVERY` frames in one of four turns (:meth:`_frame_search`) and
      accepted at :data:`FIND_PRESENCE`. Left and right are kept steady (:meth:`_keep_sides`);
      of overlapping body boxes the oldest person stays.
    - ``rotate``: each b0 turned with the person's roll (the detected face's eyes, then the
      predicted eyes) where it exceeds :data:`engine.detection.persons.ROTATE_MIN_ROLL` (45
      degrees); the face search also scans the frame turned by +-90 and 180 degrees
      (:class:`engine.detection.search.TurnedFaceSearch`), as BlazeFace misses faces rolled by
      more than about 45 degrees.
    - ``full_frame_fallback``: nobody detected or held, one person with the whole frame as b0
      (source "frame"), as the paper does for LSP.
    - ``still`` (the library API): every :meth:`process` call is an image on its own, processed
      as a video's first frame (tracks, the face search's hints and the filters forgotten before
      it), every person whose pose verifies drawn at once (the tracker confirms on the first
      detection), nothing smoothed.
    - The default detector: an :class:`engine.detection.persons.PersonDetector` with the model's
      face scaler over :func:`face_search` (tiles and windows around tracked faces, for the
      small faces of distant persons; ``min_face_confidence``, ``threads``); for a model without
      a face scaler an :class:`engine.detection.persons.FullFrameDetector` (b0 = the frame). The
      full-body LSP model's scaler turns each face into a box around the whole body, which may
      reach beyond the frame (the crop pads it; joints outside the frame are flagged, see
      ``engine.keypoints``).

    Args:
        config: the options (default ``PipelineConfig()``: weights/flic, the fastest backend).
        detector: a :class:`engine.detection.protocols.PersonFinder` to use instead of the
            default one (``detect(frame) -> PersonBoxes`` and ``close()``; not closed by
            :meth:`close`), e.g. a test double.
        tracker: a :class:`engine.tracking.tracker.PersonTracker` to use instead of the default
            one (face IoU 0.2, a new person confirmed after ``confirm_hits`` detections in his
            first ``confirm_hits + 2`` frames, hold 15 frames / 0.5 s; by body: never dropped for
            want of face detections).
    Raises:
        TypeError: ``config`` is not a PipelineConfig.
        engine.model.ModelError: the model folder cannot be used (one line; BackendError for a
            backend that cannot run it or an option it does not take).
        engine.detection.faces.DetectorError: the face model cannot be loaded.
        ValueError: an option the model cannot take (:meth:`engine.config.PipelineConfig.resolved`:
            ``stages`` beyond S, tracking by body for a psi v1 model); a ``tracker`` given with
            ``confirm_hits``, or one that confirms after several detections with ``still``.
    """

    # the options fixed when the pipeline is built, read from its resolved config
    weights = _Fixed()
    still = _Fixed()
    rotate = _Fixed()
    smoothing = _Fixed()
    track_by_pose = _Fixed()
    track_by_body = _Fixed()
    verify = _Fixed()
    full_frame_fallback = _Fixed()

    def __init__(self, config: PipelineConfig | None = None, *, detector: PersonFinder | None = None,
                 tracker: Tracker | None = None):
        from .backends import load_cascade

        config = PipelineConfig() if config is None else config
        if not isinstance(config, PipelineConfig):
            raise TypeError(f"PosePipeline takes an engine.config.PipelineConfig, got {type(config).__name__} "
                            f"(e.g. PosePipeline(PipelineConfig(weights, ...)))")
        if tracker is not None and config.still and tracker.confirm_hits != 1:
            raise ValueError(f"a still image is seen once: its tracker must confirm on one detection, "
                             f"got confirm_hits={tracker.confirm_hits}")
        if tracker is not None and config.confirm_hits is not None:
            raise ValueError("confirm_hits configures the default tracker: give it or a tracker, not both")
        self._given = config
        self.face_search: FaceSearch | None = None
        self.detector: PersonFinder | None = None
        self._owns_detector = detector is None
        self.cascade, self.info = load_cascade(config.weights, config.backend, **config.backend_options())
        try:
            self._build(config.resolved(self.info), detector, tracker)
        except BaseException:
            self.close()
            raise

    def _build(self, cfg: PipelineConfig, detector: PersonFinder | None, tracker: Tracker | None) -> None:
        """Everything but the cascade, from the resolved config ``cfg``."""
        if tracker is not None:
            cfg = replace(cfg, confirm_hits=tracker.confirm_hits)
        self._config = cfg
        self.cascade.flip = cfg.flip
        self._backend = self.cascade.regressors[0].name
        self.tracker = tracker if tracker is not None else self._make_tracker(cfg)
        self.smooth = cfg.smooth
        self._stages: int | None = None
        self.stages = cfg.stages
        self.scaler = FaceScaler.from_dict(self.info.scaler) if self.info.scaler is not None else None
        self._joints_face = self.scaler.extra.get("joints_face") if self.scaler is not None else None
        self.verifier: Verifier = PoseVerifier(cfg.verify_params, self.skeleton, self._joints_face)
        self.detect_every = cfg.detect_every
        self.recheck_every = cfg.recheck_every
        self.max_persons = cfg.max_persons
        self._since_detect: int | None = None
        self._frame_search_wait = 0   # frames until the next whole-frame search (tracking by body)
        self._frame_search_turn = 0   # index of its next turn in FRAME_SEARCH_TURNS
        self._frame_search_all = True   # the first search of a video tries every turn
        self._shown = False   # a tracked person was reported (or tentative and shown) in the last frame
        self._detect_ts = 0.0   # time of the last detection frame
        self._filters: dict[int, OneEuroFilter] = {}   # each tracked person's smoothing filter, by track id
        self._sides: dict[int, np.ndarray] = {}   # tracking by body: each person's last kept pose, by track id
        self._two_faces: set[frozenset[int]] = set()   # tracking by body: pairs of track ids seen as two faces at once
        self._frame_filter: OneEuroFilter | None = None  # the full-frame fallback person's filter
        self._index = 0
        self._t_origin: float | None = None
        self._last_stages = None
        self.detector = detector if detector is not None else self._make_detector(cfg)

    def _make_tracker(self, cfg: PipelineConfig) -> PersonTracker:
        """The default tracker of the resolved config ``cfg``."""
        # by body: presence keeps a person, not face detections; a detection only confirms him
        opts = {"anchor": False, "max_undetected_seconds": None} if cfg.track_by_body else {}
        return PersonTracker(confirm_hits=cfg.confirm_hits, confirm_frames=1 if cfg.still else cfg.confirm_hits + 2,
                             **opts)

    def _make_detector(self, cfg: PipelineConfig) -> PersonFinder:
        """The default person detector of the resolved config ``cfg`` (sets :attr:`face_search`)."""
        from .detection.faces import FaceDetector
        from .detection.persons import FullFrameDetector, PersonDetector
        if self.scaler is None:  # e.g. LSP: b0 is the whole frame (paper, Sec. 4.1)
            log.info("model %s has no face scaler: b0 is the full frame", self.weights)
            return FullFrameDetector()
        min_confidence = cfg.min_face_confidence
        scaler = self.scaler if min_confidence is None else replace(self.scaler, min_confidence=float(min_confidence))
        faces = FaceDetector(scaler.face_model, scaler.min_confidence, threads=cfg.threads)

        def search():
            return face_search(faces, cfg.track_by_body and self.rotate)

        # Rotated b0 also searches the frame turned by quarter and half turns: BlazeFace misses
        # faces rolled by more than about 45 degrees (a lying or upside-down person).
        self.face_search = (TurnedFaceSearch({0: search(), 1: search(), 2: search(), -1: search()})
                            if self.rotate else search())
        return PersonDetector(scaler, self.face_search, rotate=self.rotate)

    @property
    def config(self) -> PipelineConfig:
        """The options this pipeline runs with: its config resolved for the model
        (:meth:`engine.config.PipelineConfig.resolved`), with the live options
        (:data:`engine.config.LIVE_OPTIONS`) as they are now."""
        return replace(self._config, stages=self.stages, smooth=self.smooth, max_persons=self.max_persons,
                       detect_every=self.detect_every, recheck_every=self.recheck_every, flip=self.cascade.flip)

    def apply(self, config: PipelineConfig) -> None:
        """Take the live options of ``config`` (:data:`engine.config.LIVE_OPTIONS`: stages,
        smooth, max_persons, detect_every, recheck_every, flip) from the next frame on.

        Args:
            config: the config this pipeline was built from, or its resolved form (:attr:`config`),
                with any live options changed.
        Raises:
            ValueError: another option of ``config`` differs from both (build a new pipeline:
                :meth:`engine.config.PipelineConfig.needs_rebuild`); ``stages`` beyond the model's.
        """
        if config.needs_rebuild(self._given) and config.needs_rebuild(self._config):
            changed = [n for n in config.option_names()
                       if n not in LIVE_OPTIONS and getattr(config, n) != getattr(self._given, n)]
            raise ValueError(f"{', '.join(changed)} cannot change in a running pipeline: build a new one")
        self.stages = config.stages
        self.smooth = config.smooth
        self.max_persons = config.max_persons
        self.detect_every = config.detect_every
        self.recheck_every = config.recheck_every
        self.cascade.flip = config.flip

    # -- settings -----------------------------------------------------------------------
    @property
    def verify_params(self) -> VerifyParams:
        """The thresholds of the check of every estimate (:attr:`verifier`'s)."""
        return self.verifier.params

    @verify_params.setter
    def verify_params(self, params: VerifyParams | None) -> None:
        self.verifier.params = params or VerifyParams()

    @property
    def skeleton(self):
        """The model's :class:`engine.skeletons.Skeleton`."""
        return self.cascade.skeleton

    @property
    def num_stages(self) -> int:
        """S, the number of stages of the loaded cascade."""
        return self.cascade.num_stages

    @property
    def backend_name(self) -> str:
        """The runtime backend in use ("torch", "onnxruntime", "tensorrt")."""
        return self._backend

    @property
    def backend_description(self) -> str:
        """One line naming the backend, its library version, device and precision (and why
        ``auto`` chose it), e.g. "onnxruntime 1.31.1 (CPUExecutionProvider, 2 threads) [...]"."""
        from .backends import describe_regressors
        return describe_regressors(self.cascade.regressors)

    @property
    def stages(self) -> int:
        """Stages run per frame, 1..S (setting None means S)."""
        return self._stages

    @stages.setter
    def stages(self, value: int | None) -> None:
        s = self.num_stages if value is None else int(value)
        if not 1 <= s <= self.num_stages:
            raise ValueError(f"stages must be in 1..{self.num_stages}, got {value}")
        self._stages = s

    # -- processing ---------------------------------------------------------------------
    def process(self, frame_bgr: np.ndarray, timestamp: float | None = None, index: int | None = None) -> FrameResult:
        """Estimate the pose of every person in one frame.

        Args:
            frame_bgr: (H, W, 3) uint8 frame, BGR; in still-image mode (``still``) an image on
                its own (nothing of the previous call is used).
            timestamp: frame time in seconds (video: its presentation time). Default: seconds
                since the first frame processed after construction or :meth:`reset`
                (wall clock; for live sources; 0 in still-image mode).
            index: frame index to record (default: frames processed since :meth:`reset`).
        Returns:
            A :class:`FrameResult`.
        Raises:
            ValueError: ``frame_bgr`` is not an (H, W, 3) uint8 image.
        """
        t_start = time.perf_counter()
        if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got {None if frame_bgr is None else frame_bgr.shape}")
        if self.still:   # a video's first frame: no tracks, the whole face search
            self.reset()
        if self._t_origin is None:
            self._t_origin = t_start
        ts = (t_start - self._t_origin) if timestamp is None else float(timestamp)
        idx = self._index if index is None else int(index)
        self._index = idx + 1
        stages, smooth = self._stages, self.smooth and not self.still
        if stages != self._last_stages:   # a different stage gives different poses: restart the filters
            self._reset_filters()
            self._last_stages = stages

        t = time.perf_counter()
        detected = self._need_detection(ts)
        if detected:
            if self.face_search is not None:
                tracks = self.tracker.tracks
                # full (max_persons reached): new faces would be ignored; look only where the
                # tracked faces are (one BlazeFace call per person instead of three; per turn
                # with rotate)
                windows_only = self.tracker.full and all(tr.last_face is not None for tr in tracks)
                hinted = [tr for tr in tracks if tr.last_face is not None]
                # with rotate, each tracked face is looked for in the turns that bring it near upright
                self.face_search.set_hints([tr.last_face for tr in hinted], windows_only,
                                           rolls=[tr.angle for tr in hinted])
            found = self.detector.detect(frame_bgr)
            self._since_detect, self._detect_ts = 0, ts
        else:
            found = PersonBoxes(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0), [])
            self._since_detect += 1
        # nobody shown (a still image, seen once: always): the whole frame is searched too, also
        # when faces were found (one may be false, and a person may show no face) and when the
        # tracker is full (what it finds on a tracked person who shows nothing gives him his b0)
        if self.track_by_body and (self.still or not self._shown):
            found = self._frame_search(frame_bgr, found)
        detect_s = time.perf_counter() - t
        faces = np.asarray(found.faces, dtype=np.float64).reshape(-1, 4)
        tracks = self.tracker.update(found.b0, faces, found.scores, ts, sources=found.sources, frame_index=idx,
                                     angles=found.angles, pending=self.verify)
        for tr in tracks:   # a new track, which may have taken a lost person's id: nothing of before
            if tr.age == 1:
                self._filters.pop(tr.track_id, None)
                self._sides.pop(tr.track_id, None)
                self._two_faces = {pair for pair in self._two_faces if tr.track_id not in pair}

        h, w = frame_bgr.shape[:2]
        if self.verify and not self.track_by_body:   # held persons wait for a detection; they are not drawn
            tracks = [tr for tr in tracks if tr.source != "held"]
        elif not self.track_by_pose:   # nothing to verify or follow: estimate only whom we draw
            tracks = [tr for tr in tracks if tr.confirmed]
        if tracks:
            b0 = np.stack([tr.b0 for tr in tracks])
            angles = np.array([tr.angle for tr in tracks])
            res = self.cascade.run(frame_bgr, b0, stages, angles if angles.any() else None)
            if self.track_by_body:
                self._retry_good_b0(frame_bgr, tracks, res, stages)
            drawn = (self._observe_bodies(tracks, res, ts, found.sources) if self.track_by_body
                     else self._observe(tracks, res.stage_poses[-1], angles, ts))
            # the kept estimates of persons still being confirmed (a dropped track is not verified)
            pending, track_res = [i for i, tr in enumerate(tracks) if not tr.confirmed and tr.verified], res
        else:
            drawn, pending, track_res = [], [], None
        if not drawn and self.full_frame_fallback:
            b0 = frame_box(w, h)[None]
            res = self.cascade.run(frame_bgr, b0, stages)
        elif not tracks:
            res = self.cascade.run(frame_bgr, np.zeros((0, 4)), stages)

        entries = [(i, tracks[i]) for i in drawn] if drawn else ([(0, None)] if self.full_frame_fallback else [])
        # a tracked person who would draw nothing is no figure; the full-frame fallback, asked for,
        # always gives its one (its score says how sure)
        entries = [(i, tr) for i, tr in entries if tr is None or shows_joints(res.confidence[i])]
        persons = [self._person(res, i, tr, ts, smooth) for i, tr in entries]
        tentative = [self._person(track_res, i, tracks[i], ts, smooth) for i in pending
                     if shows_joints(track_res.confidence[i])]
        self._shown = bool(tentative) or any(tr is not None for _, tr in entries)
        if drawn or not self.full_frame_fallback:
            self._frame_filter = None
        self._forget_dropped()
        return FrameResult(idx, ts, persons, detect_s, list(res.stage_seconds), time.perf_counter() - t_start,
                           self._backend, (w, h), stages, detected, tentative)

    def _person(self, res, i: int, tr, ts: float, smooth: bool) -> PersonResult:
        """The :class:`PersonResult` of estimate ``i`` of the cascade result ``res`` at time ``ts``,
        track ``tr`` (None: the full-frame fallback person); with ``smooth``, its pose goes through
        the person's One-Euro filter (made at his first estimate, tentative or not), else the raw
        last stage."""
        raw, box = res.stage_poses[-1, i], res.b0[i]
        filt = self._filters.get(tr.track_id) if tr is not None else self._frame_filter
        if smooth:
            if filt is None:
                filt = OneEuroFilter(self.smoothing)
                if tr is not None:
                    self._filters[tr.track_id] = filt
                else:
                    self._frame_filter = filt
            pose = filt(raw, ts, scale=float(max(box[2], box[3])))
        else:
            if filt is not None:
                filt.reset()
            pose = raw.copy()
        if tr is not None:
            tid, face, source, angle = tr.track_id, tr.face, tr.source, tr.angle
            score = res.presence[i] if self.track_by_body else tr.score
        else:   # the full frame as b0: psi v2 says how sure it is that someone is there (NaN: psi v1)
            tid, face, source, angle = 0, None, "frame", 0.0
            score = res.presence[i] if np.isfinite(res.presence[i]) else 1.0
        return PersonResult(tid, box.copy(), None if face is None else np.asarray(face).copy(), source,
                            res.stage_poses[:, i].copy(), pose, float(score), smooth, float(angle),
                            res.confidence[i].copy())

    @property
    def lookahead_frames(self) -> int:
        """How many frames after his first a new person may still be confirmed (the tracker's
        ``confirm_frames`` - 1): a frame loop that holds this many frames back draws every
        confirmed person from his first frame (:class:`engine.frames.FrameLoop`'s ``lookahead``)."""
        return max(0, self.tracker.confirm_frames - 1)

    @property
    def max_persons(self) -> int | None:
        """Follow at most this many persons (None: everyone found); the tracker's capacity."""
        return self.tracker.max_confirmed

    @max_persons.setter
    def max_persons(self, n: int | None) -> None:
        self.tracker.max_confirmed = n   # ValueError below 1

    def _need_detection(self, ts: float) -> bool:
        """Run the face detector on the frame at time ``ts``? Always without tracking by pose;
        else every ``detect_every`` frames (newcomers), or every ``recheck_every`` once the
        tracker is full (and at least three times per ``max_undetected_seconds``), and whenever
        nobody is tracked, a track is tentative (it needs detections to be confirmed) or lost
        (no pose to follow)."""
        if not self.track_by_pose or self._since_detect is None:
            return True
        tracks = self.tracker.tracks
        if not tracks or any(not tr.confirmed or tr.next_b0 is None for tr in tracks):
            return True
        if not self.tracker.full:
            return self._since_detect + 1 >= self.detect_every
        limit = self.tracker.max_undetected_seconds
        return (self._since_detect + 1 >= max(self.detect_every, self.recheck_every)
                or (limit is not None and ts - self._detect_ts >= limit / 3))

    def _frame_search(self, frame_bgr: np.ndarray, found: PersonBoxes) -> PersonBoxes:
        """Tracking by body, while nobody tracked was shown in the last frame (in still-image mode:
        always), beside the faces found: every :data:`FRAME_SEARCH_EVERY` frames, stage 1 on the
        whole frame and on squares along it (:func:`search_boxes`), turned by the next of
        :data:`FRAME_SEARCH_TURNS` (in still-image mode, and on the first search of a video, by all
        of them at once); the pose with the highest presence, if at least :data:`FIND_PRESENCE`,
        is added to ``found`` as one more candidate (source "body"):
        the box around it, turned with its torso. A candidate on a person a face also found is
        dropped as the younger duplicate (:meth:`_observe_bodies`); one the tracker matches to a
        tracked person too unsure to be shown gives him his b0 (``Track.sure``).

        It used to run only while no face was found and nobody was tracked. On animated LSP clips
        a figure held astride a badminton player and a seated man, showing no joint, kept it off
        for 50 frames, and with ``rotate`` faces found turned on the background for 7 frames. On
        the first 20 clips (``tools.eval.animate --images 20``) it then drew 1135 and, with
        ``rotate``, 1138 of 1200 frames against 1129 and 1131 before."""
        if self._frame_search_wait > 0:
            self._frame_search_wait -= 1
            return found
        self._frame_search_wait = FRAME_SEARCH_EVERY - 1
        if self.still or self._frame_search_all:   # a video's first search: every turn at once
            turns = FRAME_SEARCH_TURNS
            self._frame_search_all, self._frame_search_turn = False, 1   # then on as after an upright one
        else:
            turns = (FRAME_SEARCH_TURNS[self._frame_search_turn],)
            self._frame_search_turn = (self._frame_search_turn + 1) % len(FRAME_SEARCH_TURNS)
        h, w = frame_bgr.shape[:2]
        boxes, angles = zip(*[(b, t) for t in turns for b in search_boxes(w, h, t)])
        res = self.cascade.run(frame_bgr, np.stack(boxes), stages=1, angles=np.array(angles))
        best = int(np.argmax(np.nan_to_num(res.presence, nan=-1.0)))
        if not res.presence[best] >= FIND_PRESENCE:
            return found
        pose = res.stage_poses[-1, best:best + 1]
        angle = body_angles(pose, self.skeleton)
        box = body_box(pose, angle)
        if not np.isfinite(box).all():
            return found
        n = len(found.b0)
        found_angles = np.zeros(n) if found.angles is None else np.asarray(found.angles, dtype=np.float64).reshape(n)
        return PersonBoxes(np.concatenate([np.asarray(found.b0, np.float64).reshape(n, 4), box]),
                           np.concatenate([np.asarray(found.faces, np.float64).reshape(n, 4), np.full((1, 4), np.nan)]),
                           np.concatenate([np.asarray(found.scores, np.float64).reshape(n), res.presence[best:best + 1]]),
                           list(found.sources) + ["body"], np.concatenate([found_angles, angle]))

    def _retry_good_b0(self, frame_bgr: np.ndarray, tracks: list, res, stages: int | None) -> None:
        """Tracking by body, while no confirmed person's estimate in this frame shows him
        (presence at least :data:`KEEP_PRESENCE` and :func:`shows_joints`): each confirmed person
        shown in the last frame (his estimate read him there and showed joints, ``Track.sure``, and
        he has not been missed since, so the tracker's ``good_b0`` and ``good_angle`` are that
        frame's b0 and roll) is estimated again from that b0 and roll, and where the new estimate
        shows him it replaces his first one in ``res`` (in place,
        :meth:`engine.cascade.CascadeResult.take`), that b0 and roll become his for this frame and
        his b0 source is "held" (the tracker then leaves his velocity as it was: that b0 is not one
        frame's move). Not where that b0 and roll are this frame's. A retried b0 that showed him is
        his good b0 again, so it may serve several frames in a row, until the box around his pose
        reads him again.

        The box around a pose is not always a box the network reads. On the first 20 animated
        LSP clips (``tools.eval.animate --images 20``) a figure blinked off where the box around
        a sure pose read nobody in the next frame (a player diving across a turned frame: presence
        0.99 and 14 joints shown, then 0.31), while the b0 that had shown him still read him:
        with this, 1152 of 1200 frames are drawn against 1135 (1151, with or without ``rotate``,
        with the first search in every turn too; 1138 before with ``rotate``).
        Not while someone else is shown: on walking.mp4 with everyone followed, retrying every
        person who failed kept people on stale boxes (a figure on nobody, counted precision
        0.932 or 0.980 depending on which last b0 was kept); this way the crowd reads as before
        (1.000, recall 0.724). Costs one more cascade run, in frames where nobody shows. With
        ``verify`` off (not the default of tracking by body) a detection counts as seeing a
        person, so ``misses`` may be 0 after a missed estimate and the b0 retried an older one.

        Args:
            frame_bgr: the frame, (H, W, 3) uint8 BGR.
            tracks: this frame's P tracks, as run.
            res: their :class:`engine.cascade.CascadeResult` (P persons), changed in place.
            stages: the stages that ran (None: all).
        """
        shows = [bool(res.presence[i] >= KEEP_PRESENCE) and shows_joints(res.confidence[i]) for i in range(len(tracks))]
        if any(s and tr.confirmed for s, tr in zip(shows, tracks)):
            return
        # kept and sure in the last frame (observed ok, not missed since): good_b0 and good_angle are that frame's
        retry = [i for i, tr in enumerate(tracks)
                 if tr.confirmed and tr.misses == 0 and tr.sure and tr.good_b0 is not None
                 and not (np.allclose(tr.good_b0, res.b0[i]) and np.isclose(tr.good_angle, tr.angle))]
        if not retry:
            return
        b0 = np.stack([tracks[i].good_b0 for i in retry])
        angles = np.array([tracks[i].good_angle for i in retry])
        again = self.cascade.run(frame_bgr, b0, stages, angles if angles.any() else None)
        res.stage_seconds = [a + b for a, b in zip(res.stage_seconds, again.stage_seconds)]
        for j, i in enumerate(retry):
            if again.presence[j] >= KEEP_PRESENCE and shows_joints(again.confidence[j]):
                res.take(i, again, j)
                tracks[i].b0, tracks[i].angle, tracks[i].source = b0[j].copy(), float(angles[j]), "held"

    def _observe_bodies(self, tracks: list, res, ts: float, sources: list[B0Source]) -> list[int]:
        """Tracking by body: keep the estimates whose presence is at least :data:`KEEP_PRESENCE`
        and whose torso is not flipped against their b0 (:data:`FLIP_ROLL`), of a person hidden
        behind another only one at his size (:data:`HIDDEN_MIN_SIZE`), drop the younger of two
        whose body boxes overlap (unless their faces were seen apart, :meth:`_two_persons`, or he is hidden behind the other, :data:`HIDDEN_AFTER_FRAMES`:
        then he is missed), report to the tracker with the next
        frame's b0 (the box around each kept pose, turned with its torso by at most
        :data:`MAX_TURN_PER_FRAME`); a tentative person
        seen again counts a hit; each track's ``sure`` says whether his estimate shows joints
        (:func:`shows_joints`). ``sources``: this frame's detections' b0 sources (the tracks'
        ``detection`` rows). Returns the indices of the persons to draw (confirmed, kept)."""
        faced = np.array([tr.detected and tr.detection is not None and sources[tr.detection] == "face" for tr in tracks])
        # swapping sides leaves the shoulders' and hips' midpoints, so the roll, as they were
        roll = np.nan_to_num(torso_roll(res.stage_poses[-1], self.skeleton))
        self._keep_sides(tracks, res, faced, roll)
        poses, p = res.stage_poses[-1], len(tracks)
        was = np.array([tr.angle for tr in tracks])
        want = roll_beyond_upright(roll)
        angles = turn_at_most(was, want)
        boxes = body_box(poses, angles)
        ok = (res.presence >= KEEP_PRESENCE) & np.isfinite(boxes).all(1)
        ok &= np.abs(wrapped(want - was)) <= np.radians(FLIP_ROLL)   # not flipped
        hidden_size = np.array([tr.size if tr.hidden else 0.0 for tr in tracks])   # Track.size: sqrt of a box's area
        ok &= ~(np.sqrt(np.nan_to_num(boxes[:, 2] * boxes[:, 3])) < HIDDEN_MIN_SIZE * hidden_size)   # not a part of him
        implied = joints_face(poses, self.skeleton, self._joints_face)   # the face a detection is matched on
        self._remember_two_faces(tracks, faced & ok, implied)
        drop, hidden = np.zeros(p, bool), np.zeros(p, bool)
        kept: list[int] = []
        for i in sorted(range(p), key=lambda i: (not tracks[i].confirmed, tracks[i].first_frame, tracks[i].track_id)):
            if not ok[i]:
                continue
            same = ((box_iou(boxes[i], boxes[kept]) > DUPLICATE_BODY_IOU)
                    | (box_overlap(boxes[i], boxes[kept]) > DUPLICATE_BODY_INSIDE)).ravel() if kept else []
            if any(d and not self._two_persons(tracks[i], tracks[j], implied[i], implied[j])
                   for d, j in zip(same, kept)):
                if tracks[i].confirmed and tracks[i].age >= HIDDEN_AFTER_FRAMES:
                    ok[i], hidden[i] = False, True   # behind the other: missed, held where his motion takes him
                else:
                    drop[i] = True
                continue
            kept.append(i)
        for i, tr in enumerate(tracks):
            if drop[i]:
                self.tracker.drop(tr)
                continue
            if ok[i] and not tr.confirmed:
                tr.pending_hit = True
            face = implied[i] if ok[i] and np.isfinite(implied[i]).all() else None
            if ok[i]:
                self._sides[tr.track_id] = poses[i].copy()
            tr.sure = shows_joints(res.confidence[i])
            self.tracker.observe(tr, bool(ok[i]), boxes[i] if ok[i] else None, face, float(angles[i]), ts,
                                 hidden=bool(hidden[i]))
        return [i for i, tr in enumerate(tracks) if not drop[i] and tr.confirmed and tr.verified]

    def _remember_two_faces(self, tracks: list, faced: np.ndarray, implied: np.ndarray) -> None:
        """Tracking by body: two persons whose faces were detected apart in one frame, and whose
        poses put each face on his own detected one, are two persons from then on, however much
        their bodies overlap (on walking.mp4 two men side by side on a bench, one partly behind the
        other, were one figure by the duplicate rule). A false face on a person's hand is no second
        person: the pose estimated from it puts the face on his real one.

        Args:
            tracks: this frame's tracks.
            faced: (P,) bool, a face detected in this frame matched the track and its estimate is
                kept; the detected faces are the tracks' ``last_face`` (their ``face`` is the
                one their last pose implies when tracking by body does not anchor on detections).
            implied: (P, 4) the faces the tracks' poses imply, pixels (NaN rows where none).
        """
        idx = [i for i in range(len(tracks)) if faced[i] and tracks[i].last_face is not None
               and np.isfinite(implied[i]).all()]
        if len(idx) < 2:
            return
        faces = np.stack([np.asarray(tracks[i].last_face, np.float64) for i in idx])
        own = np.diag(box_overlap(implied[idx], faces)) > 0.5        # each pose's face on its detected face
        apart = (box_overlap(faces, faces) == 0) & (box_overlap(implied[idx], implied[idx]) == 0)
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                if apart[a, b] and own[a] and own[b]:
                    self._two_faces.add(frozenset((tracks[idx[a]].track_id, tracks[idx[b]].track_id)))

    def _two_persons(self, a, b, face_a: np.ndarray, face_b: np.ndarray) -> bool:
        """Tracks ``a`` and ``b``, whose bodies overlap, are two persons: once seen as two faces
        (:meth:`_remember_two_faces`) and their poses' faces (``face_a``, ``face_b``: (4,) pixels)
        still apart."""
        return (frozenset((a.track_id, b.track_id)) in self._two_faces
                and np.isfinite(face_a).all() and np.isfinite(face_b).all()
                and box_overlap(face_a[None], face_b[None])[0, 0] == 0)

    def _keep_sides(self, tracks: list, res, faced: np.ndarray, roll: np.ndarray) -> None:
        """Put each person's left and right joints on the right sides, in place in ``res`` (this
        frame's poses of every stage, confidences and scales; the skeleton's mirror swaps them).

        A person whose face was detected in this frame faces the camera: in his torso's upright
        frame his left shoulder and hip lie right of his right ones (image x), else they are
        swapped. Otherwise his sides stay those of his last kept pose: swapped where the pose with
        its sides swapped is nearer that pose by :data:`SIDE_SWAP_RATIO`.

        Args:
            tracks: the P tracks of ``res``.
            res: the frame's :class:`engine.cascade.CascadeResult`, changed in place.
            faced: (P,) bool, a face detection matched the person in this frame.
            roll: (P,) each pose's torso roll, radians (:func:`engine.detection.persons.torso_roll`, NaN as 0).
        """
        mirror = np.asarray(self.skeleton.mirror)
        names = self.skeleton.joints
        pairs = [(names.index(f"l_{n}"), names.index(f"r_{n}")) for n in ("shoulder", "hip")
                 if f"l_{n}" in names and f"r_{n}" in names]
        for i, tr in enumerate(tracks):
            pose = res.stage_poses[-1, i]
            ref = self._sides.get(tr.track_id)
            if faced[i] and pairs:
                across = sum(pose[left] - pose[right] for left, right in pairs)   # person's right to left
                swap = np.cos(roll[i]) * across[0] + np.sin(roll[i]) * across[1] < 0   # x in the upright frame
            elif ref is not None:
                direct = np.nanmean(np.linalg.norm(pose - ref, axis=1))
                swap = np.nanmean(np.linalg.norm(pose[mirror] - ref, axis=1)) < SIDE_SWAP_RATIO * direct
            else:
                continue
            if swap:
                res.stage_poses[:, i] = res.stage_poses[:, i][:, mirror]
                res.confidence[i] = res.confidence[i][mirror]
                res.joint_scale[i] = res.joint_scale[i][mirror]

    def _observe(self, tracks: list, poses: np.ndarray, angles: np.ndarray, ts: float) -> list[int]:
        """Verify this frame's estimates, drop duplicates and faces on other persons' bodies,
        report to the tracker (with the next frame's b0 from each verified pose); returns the
        indices of the persons to draw (confirmed and verified; without verification:
        confirmed)."""
        p = len(tracks)
        skel = self.skeleton
        nan4 = np.full(4, np.nan)
        implied = joints_face(poses, skel, self._joints_face)             # (P, 4), NaN without face joints
        if self.verify:
            ref = np.stack([tr.face if tr.face is not None else (tr.last_face if tr.last_face is not None else nan4)
                            for tr in tracks])
            ok = self.verifier.check(poses, ref, angles, from_pose=np.array([tr.source == "pose" for tr in tracks]),
                                     implied=implied)
        else:
            ok = np.ones(p, bool)
        drop = np.zeros(p, bool)
        if self.verify:
            # One skeleton per face: of estimates whose implied faces coincide keep the oldest track.
            order = sorted(range(p), key=lambda i: (not tracks[i].confirmed, tracks[i].first_frame, tracks[i].track_id))
            kept: list[int] = []
            for i in order:
                if not ok[i]:
                    continue
                if kept and ((box_iou(implied[i], implied[kept]) > 0.3) | (box_overlap(implied[i], implied[kept]) > 0.6)).any():
                    drop[i], ok[i] = True, False
                    continue
                kept.append(i)
            # A "face" on another person's body (a hand, a belt) is not a person: drop a face on
            # the body of a confirmed person when it is new, or of a person tracked at least as
            # long whose face is clearly larger (nearer); largest faces first.
            sizes = face_size(implied)
            bodies: list[int] = []
            for i in sorted(kept, key=lambda i: (not tracks[i].confirmed, -sizes[i])):
                owners = [j for j in bodies if (tracks[j].confirmed and not tracks[i].confirmed)
                          or (sizes[j] >= BODY_FACE_RATIO * sizes[i] and tracks[j].first_frame <= tracks[i].first_frame)]
                centre = (tracks[i].face if tracks[i].face is not None else implied[i])[:2]
                if owners and on_bodies(centre[None], poses[owners], sizes[owners], skel)[0]:
                    drop[i], ok[i] = True, False
                else:
                    bodies.append(i)
        li, ri = (skel.joints.index(n) if n in skel.joints else None for n in ("l_eye", "r_eye"))
        for i, tr in enumerate(tracks):
            if drop[i]:
                self.tracker.drop(tr)
                continue
            if tr.source == "held":   # (only without verification) waits for a detection
                continue
            nb = nf = None
            na = 0.0
            if ok[i] and self.track_by_pose and np.isfinite(implied[i]).all():
                nf = implied[i]
                if self.rotate and li is not None and ri is not None:
                    na = float(turn_angles(face_roll(poses[i, ri], poses[i, li])))
                nb = self.scaler.apply(nf, na)
            self.tracker.observe(tr, bool(ok[i]), nb, nf, na, ts)
        return [i for i, tr in enumerate(tracks) if not drop[i] and tr.confirmed and (tr.verified or not self.verify)]

    def warmup(self, frame_size: tuple[int, int] = (640, 480)) -> None:
        """Run every stage once on a blank frame (first-call costs: allocation, engine builds)."""
        frame = np.zeros((frame_size[1], frame_size[0], 3), np.uint8)
        self.cascade.run(frame, np.array([[frame_size[0] / 2, frame_size[1] / 2, 200.0, 200.0]]))

    def _reset_filters(self) -> None:
        self._filters.clear()
        self._frame_filter = None

    def _forget_dropped(self) -> None:
        """Let go of the filters, sides and two-face pairs of persons the tracker no
        longer follows."""
        live = {tr.track_id for tr in self.tracker.tracks}
        for kept in (self._filters, self._sides):
            for tid in [t for t in kept if t not in live]:
                del kept[tid]
        self._two_faces = {pair for pair in self._two_faces if pair <= live}

    def reset(self) -> None:
        """Start a new video or source: forget tracks, filters, the frame counter and clock."""
        self.tracker.reset()
        if self.face_search is not None:
            self.face_search.reset()
        self._since_detect = None
        self._frame_search_wait = 0
        self._frame_search_turn = 0
        self._frame_search_all = True
        self._shown = False
        self._filters.clear()
        self._sides.clear()
        self._two_faces.clear()
        self._frame_filter = None
        self._index = 0
        self._t_origin = None

    def close(self) -> None:
        """Release the detector (if this pipeline made it) and the cascade's networks; idempotent."""
        for r in self.cascade.regressors:
            r.close()
        if self._owns_detector and self.detector is not None:
            self.detector.close()
            if self.face_search is not None:
                self.face_search.close()
        self.detector = None
        self.face_search = None

    def __enter__(self) -> "PosePipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
