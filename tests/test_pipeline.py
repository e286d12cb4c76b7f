"""The frame pipeline (engine/pipeline.py) and its parts: One-Euro smoothing (engine/smoothing.py),
person tracking and the small-face search (engine/tracking.py)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from deeppose.engine.pipeline import FrameResult, PosePipeline
from deeppose.engine.smoothing import OneEuroFilter, OneEuroParams, smoothing_factor
from deeppose.engine.tracking import PersonTracker, TrackingFaceDetector, box_iou, nms

from conftest import WALKING, WEIGHTS_FLIC, require_data


# --------------------------------------------------------------------------- helpers

@dataclass
class Boxes:
    b0: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    sources: list


class ScriptedDetector:
    """A person detector that returns, for frame i, the b0 boxes script[i] (faces = b0 / 5)."""

    def __init__(self, script):
        self.script = script
        self.calls = 0
        self.closed = False

    def detect(self, image):
        b0 = np.asarray(self.script[min(self.calls, len(self.script) - 1)], dtype=np.float64).reshape(-1, 4)
        self.calls += 1
        faces = b0.copy()
        faces[:, 1] -= b0[:, 3] / 3
        faces[:, 2:] /= 5
        return Boxes(b0, faces, np.full(len(b0), 0.9), ["face"] * len(b0))

    def close(self):
        self.closed = True


class CountingRegressor:
    """Wraps a regressor and records the batch size of every call."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[int] = []

    def regress(self, crops):
        self.batches.append(len(crops))
        return self.inner.regress(crops)


def walking_frames(n: int) -> list[np.ndarray]:
    require_data("videos", "walking.mp4")
    cap = cv2.VideoCapture(str(WALKING))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == n
    return frames


# --------------------------------------------------------------------------- One-Euro filter

def test_smoothing_factor_matches_the_paper():
    # alpha = 1 / (1 + tau/dt), tau = 1/(2 pi fc)
    dt, fc = 1 / 30, 1.0
    assert smoothing_factor(fc, dt) == pytest.approx(1 / (1 + (1 / (2 * np.pi * fc)) / dt))
    assert smoothing_factor(1e6, dt) == pytest.approx(1.0, abs=1e-4)


def test_one_euro_removes_jitter_at_rest():
    rng = np.random.default_rng(0)
    truth = rng.uniform(100, 500, size=(11, 2))
    f = OneEuroFilter()
    out = []
    for i in range(90):
        noisy = truth + rng.normal(0, 4.0, size=truth.shape)
        out.append(f(noisy, i / 30, scale=300.0))
    out = np.array(out[30:])
    raw_jitter = 4.0 * np.sqrt(2)
    err = np.linalg.norm(out - truth, axis=-1).mean()
    assert err < 0.5 * raw_jitter, err
    # frame-to-frame motion of the smoothed pose is far below the noise's
    assert np.linalg.norm(np.diff(out, axis=0), axis=-1).mean() < 0.25 * raw_jitter


def test_one_euro_follows_fast_motion_with_small_lag():
    # A joint moving 2 box sizes per second (600 px/s for a 300 px box).
    t = np.arange(60) / 30
    x = np.stack([100 + 600 * t, np.full_like(t, 200.0)], axis=-1)[:, None, :]  # (T, 1, 2)
    fast = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=5.0))
    slow = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0))
    lag_fast = [600 * ti + 100 - fast(xi, ti, 300.0)[0, 0] for ti, xi in zip(t, x)][-1]
    lag_slow = [600 * ti + 100 - slow(xi, ti, 300.0)[0, 0] for ti, xi in zip(t, x)][-1]
    assert lag_fast < 0.25 * lag_slow
    assert lag_fast < 30  # px, i.e. < 0.1 box size


def test_one_euro_first_sample_passes_and_nan_keeps_last_estimate():
    f = OneEuroFilter()
    a = np.array([[10.0, 20.0], [30.0, 40.0]])
    assert np.array_equal(f(a, 0.0), a)
    b = a + 5
    b[1] = np.nan
    out = f(b, 1 / 30)
    assert np.array_equal(out[1], a[1])               # missing joint: unchanged
    assert np.all((out[0] > a[0]) & (out[0] < b[0]))  # present joint: between old and new
    f.reset()
    assert np.array_equal(f(b, 5.0)[0], b[0])


# --------------------------------------------------------------------------- tracking

def test_box_iou_values():
    a = np.array([[5.0, 5.0, 10.0, 10.0]])
    b = np.array([[5.0, 5.0, 10.0, 10.0], [10.0, 5.0, 10.0, 10.0], [50.0, 50.0, 4.0, 4.0], [0, 0, 0, 0]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 0.0])
    boxes, scores = np.concatenate([a, b[:3]]), np.array([0.5, 0.9, 0.8, 0.7])
    assert list(nms(boxes, scores, 0.4)) == [1, 2, 3]  # identical boxes merge; IoU 1/3 stays
    assert list(nms(boxes, scores, 0.3)) == [1, 3]     # ... unless the threshold is below 1/3


def test_tracker_keeps_ids_holds_and_drops():
    tracker = PersonTracker(iou_threshold=0.3, max_hold_frames=3, max_hold_seconds=10.0, min_hits=2,
                            min_hit_rate=0.3)

    class tr:  # faces given as the b0 boxes themselves
        @staticmethod
        def update(b0, timestamp):
            return tracker.update(b0, b0, timestamp=timestamp)

    p1 = np.array([100.0, 100.0, 80.0, 100.0])
    p2 = np.array([400.0, 120.0, 80.0, 100.0])
    out = tr.update(np.stack([p1, p2]), timestamp=0.0)
    ids = {round(t.b0[0]): t.track_id for t in out}
    assert sorted(ids.values()) == [1, 2]
    # Next frame: both moved a little, given in the other order.
    out = tr.update(np.stack([p2 + [6, 0, 0, 0], p1 + [5, 2, 0, 0]]), timestamp=1 / 30)
    assert {round(t.b0[0]): t.track_id for t in out} == {105: ids[100], 406: ids[400]}
    assert all(t.source == "face" and t.misses == 0 for t in out)
    # Person 2's face is missed for 3 frames: held with its last b0, then dropped.
    for i in range(3):
        out = tr.update(p1[None] + [5, 2, 0, 0], timestamp=(2 + i) / 30)
        held = [t for t in out if t.track_id == ids[400]]
        assert len(held) == 1 and held[0].source == "held" and held[0].face is None
        assert held[0].b0[0] == 406 and held[0].last_face is not None
    out = tr.update(p1[None] + [5, 2, 0, 0], timestamp=5 / 30)
    assert [t.track_id for t in out] == [ids[100]]
    # A person far from every track is new.
    out = tr.update(np.stack([p1, p2 + [300, 0, 0, 0]]), timestamp=6 / 30)
    assert sorted(t.track_id for t in out) == [ids[100], 3]


def test_tracker_hold_limited_in_seconds():
    tr = PersonTracker(max_hold_frames=100, max_hold_seconds=0.5, min_hits=1)
    tr.update(np.array([[100.0, 100.0, 50.0, 50.0]]), timestamp=0.0)
    assert len(tr.update(np.zeros((0, 4)), timestamp=0.4)) == 1
    assert len(tr.update(np.zeros((0, 4)), timestamp=0.6)) == 0


def test_tracker_holds_only_established_persons():
    """A face seen in 1-2 frames (a spurious detection) is not held; nor is one detected in
    fewer than half of the frames since it started."""
    tr = PersonTracker(min_hits=3, min_hit_rate=0.5)
    box = np.array([[100.0, 100.0, 50.0, 50.0]])
    none = np.zeros((0, 4))
    assert len(tr.update(box, box)) == 1
    assert len(tr.update(box, box)) == 1
    assert tr.update(none) == []                      # 2 hits: not held
    tr.reset()
    for _ in range(3):
        tr.update(box, box)
    assert [t.source for t in tr.update(none)] == ["held"]   # 3 hits of 4 frames
    for _ in range(10):
        tr.update(none)
    tr.update(box, box)   # 4 hits of 15 frames: detected, but no longer held when missed
    assert tr.update(none) == []


class FakeFaceDetector:
    """Finds a 'face' wherever the image has a white square, only if it spans >= 5 % of the
    image's longer side (as BlazeFace misses faces that are small in its 192 px input)."""

    def __init__(self):
        self.calls = []

    def detect(self, image):
        self.calls.append(image.shape[:2])
        mask = (image == 255).all(axis=2).astype(np.uint8)
        n, _, stats, cents = cv2.connectedComponentsWithStats(mask)
        faces = [(c[0], c[1], s[2], s[3]) for s, c in zip(stats[1:], cents[1:])
                 if s[2] >= 0.05 * max(image.shape[:2])]
        return np.array(faces, dtype=np.float64).reshape(-1, 4), np.full(len(faces), 0.9)

    def close(self):
        pass


def test_tracking_face_detector_finds_small_faces_in_tiles_and_windows():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[80:120, 1000:1040] = 255   # a 40 px face: too small for the whole-frame pass
    fake = FakeFaceDetector()
    assert len(fake.detect(frame)[0]) == 0
    det = TrackingFaceDetector(fake, tile=640, overlap=0.25)
    tiles = det.tiles(1280, 720)
    # The grid covers the frame.
    cover = np.zeros((720, 1280), bool)
    for x0, y0, x1, y1 in tiles:
        cover[y0:y1, x0:x1] = True
    assert cover.all() and len(tiles) == 6
    faces, scores = det.detect(frame)   # first frame: every tile scanned
    assert len(faces) == 1
    assert faces[0] == pytest.approx([1019.5, 99.5, 40, 40])
    # Later frames: one tile plus a window around the hinted face.
    fake.calls.clear()
    det.set_hints(faces)
    faces2, _ = det.detect(frame)
    assert len(faces2) == 1 and faces2[0] == pytest.approx(faces[0])
    assert len(fake.calls) == 3 and (200, 200) in fake.calls  # frame, window (5 face sizes), one tile
    # A face large enough for the whole-frame pass needs no window.
    fake.calls.clear()
    det.set_hints(np.array([[600.0, 300.0, 200.0, 200.0]]))
    det.detect(frame)
    assert len(fake.calls) == 2


# --------------------------------------------------------------------------- the pipeline

@pytest.fixture(scope="module")
def model_dir(random_model_dir):
    """weights/flic once trained, else the random-weights model (same shapes)."""
    return WEIGHTS_FLIC if (WEIGHTS_FLIC / "manifest.json").is_file() else random_model_dir


def test_pipeline_batches_all_persons_per_stage(model_dir):
    script = [[[200.0, 240.0, 150.0, 200.0], [450.0, 240.0, 150.0, 200.0]]]
    pipe = PosePipeline(model_dir, backend="torch", detector=ScriptedDetector(script), threads=1)
    counters = [CountingRegressor(r) for r in pipe.cascade.regressors]
    pipe.cascade.regressors = counters
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    res = pipe.process(frame, 0.0)
    k, s = pipe.skeleton.k, pipe.num_stages
    assert isinstance(res, FrameResult) and len(res.persons) == 2
    assert [c.batches for c in counters] == [[2]] + [[2 * k]] * (s - 1)  # one batch per stage
    for p in res.persons:
        assert p.stage_poses.shape == (s, k, 2) and p.pose.shape == (k, 2)
        assert p.b0_source == "face" and p.face is not None and p.stage == s
    assert len(res.stage_seconds) == s and res.total_seconds >= res.detect_seconds
    assert res.backend == "torch" and res.frame_size == (640, 480)
    # Fewer stages at run time.
    pipe.stages = 1
    res1 = pipe.process(frame, 1 / 30)
    assert all(p.stage_poses.shape == (1, k, 2) for p in res1.persons)
    with pytest.raises(ValueError):
        pipe.stages = s + 1
    pipe.close()


def test_pipeline_holds_missed_person_and_smooths(model_dir):
    box = [300.0, 240.0, 200.0, 240.0]
    script = [[box], [box], [box], [], [], [box], []] + [[]] * 20
    det = ScriptedDetector(script)
    pipe = PosePipeline(model_dir, backend="torch", detector=det, threads=1)
    pipe.stages = 1
    frame = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    results = [pipe.process(frame, i / 30) for i in range(7 + 16)]
    srcs = [[p.b0_source for p in r.persons] for r in results]
    assert srcs[:7] == [["face"], ["face"], ["face"], ["held"], ["held"], ["face"], ["held"]]
    assert len({p.track_id for r in results[:7] for p in r.persons}) == 1
    # Held for at most 15 frames / 0.5 s, then nobody.
    assert results[-1].persons == []
    assert [r.index for r in results[:3]] == [0, 1, 2]
    assert results[3].persons[0].face is None
    assert np.array_equal(results[3].persons[0].b0, box)
    # Smoothing: the same frame over and over gives a steady pose; raw output equals the
    # stage output when smoothing is off.
    assert all(p.smoothed for p in results[0].persons)
    pipe.smooth = False
    pipe.reset()
    pipe.detector = ScriptedDetector([[box]])
    r = pipe.process(frame, 0.0)
    assert r.index == 0
    assert not r.persons[0].smoothed
    assert np.array_equal(r.persons[0].pose, r.persons[0].stage_poses[-1])
    pipe.close()
    assert not det.closed  # a detector passed in belongs to the caller


def test_pipeline_full_frame_fallback(model_dir):
    pipe = PosePipeline(model_dir, backend="torch", detector=ScriptedDetector([[]]), full_frame_fallback=True,
                        threads=1)
    pipe.stages = 1
    r = pipe.process(np.zeros((240, 320, 3), np.uint8), 0.0)
    assert len(r.persons) == 1 and r.persons[0].b0_source == "frame"
    assert r.persons[0].b0 == pytest.approx([159.5, 119.5, 320, 240])
    pipe.close()


def test_pipeline_on_walking_video_tracks_the_walker(model_dir):
    """Real detector on the first frames of walking.mp4: the walking man (face near
    x = 775, y = 95 at 1280x720) is found from the first frame and keeps one id."""
    frames = walking_frames(12)
    with PosePipeline(model_dir, backend="torch", threads=1) as pipe:
        pipe.stages = 1
        ids = []
        for i, f in enumerate(frames):
            r = pipe.process(f, i / 30)
            walker = [p for p in r.persons if p.face is not None and 700 < p.face[0] < 850 and p.face[1] < 200]
            if walker:
                ids.append(walker[0].track_id)
        assert len(ids) >= 10, f"walker's face found in {len(ids)} of 12 frames"
        assert len(set(ids)) == 1


def _pose_on_person(pose: np.ndarray, b0: np.ndarray, face: np.ndarray, skeleton) -> bool:
    """The pose lies on the person: joints inside b0 (grown 10 %), shoulders at least a face
    wide apart and below the face centre, hips below the shoulders."""
    j = skeleton.index
    lo = b0[:2] - 0.55 * b0[2:]
    hi = b0[:2] + 0.55 * b0[2:]
    inside = ((pose >= lo) & (pose <= hi)).all(axis=1).mean()
    s_face = float(np.sqrt(face[2] * face[3]))
    sho = pose[[j("l_shoulder"), j("r_shoulder")]]
    hips = pose[[j("l_hip"), j("r_hip")]]
    return bool(inside >= 0.9 and np.linalg.norm(sho[0] - sho[1]) > 0.8 * s_face
                and sho[:, 1].min() > face[1] and hips[:, 1].mean() > sho[:, 1].mean() + 0.5 * s_face)


def test_trained_joints_lie_on_the_walker(flic_weights):
    """Every 3rd frame of the first 36 of walking.mp4 (the video test covers every frame)."""
    frames = walking_frames(36)[::3]
    ok = 0
    found = 0
    with PosePipeline(flic_weights) as pipe:
        for i, f in enumerate(frames):
            r = pipe.process(f, 3 * i / 30)
            walker = [p for p in r.persons if p.face is not None and 700 < p.face[0] < 850 and p.face[1] < 200]
            if walker:
                found += 1
                ok += _pose_on_person(walker[0].pose, walker[0].b0, walker[0].face, pipe.skeleton)
    assert found >= 10
    assert ok >= 0.8 * found, f"pose on the walker in {ok} of {found} frames"


def test_model_without_face_scaler_uses_the_full_frame_as_b0(tmp_path):
    """An LSP model (no face scaler) takes the whole frame as b0, as in the paper; no face detector."""
    from conftest import make_random_model
    from deeppose.engine.detector import FullFrameDetector
    from deeppose.engine.pipeline import PosePipeline

    model = make_random_model(tmp_path / "lsp", stages=1, skeleton_name="lsp")
    with PosePipeline(model, backend="torch", smooth=False) as pipe:
        assert isinstance(pipe.detector, FullFrameDetector)
        result = pipe.process(np.zeros((120, 160, 3), np.uint8))
    assert len(result.persons) == 1 and result.persons[0].b0_source == "frame"
    np.testing.assert_allclose(result.persons[0].b0, [79.5, 59.5, 160, 120])
    assert result.persons[0].pose.shape == (14, 2)
