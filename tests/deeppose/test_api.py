"""The library API: Pose(weights)(image) -> (joints, b0) on real FLIC images with the shipped
model, PoseSmoother on real video frames, and the README's example run as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from deeppose import Pose, PoseSmoother
from deeppose.engine.backends import load_cascade
from support import REPO, TEST_DATA, WALKING, require_data


@pytest.fixture(scope="module")
def pose(flic_weights):
    with Pose(flic_weights, fallback="frame", threads=1) as p:
        yield p


@pytest.fixture(scope="module")
def flic_val():
    require_data("flic", "examples.mat")
    from deeppose.tools.data.datasets import load_dataset
    ds = load_dataset("flic", None, "val")
    ds.examples = ds.examples[::40][:12]
    return ds


def test_pose_finds_the_labelled_person_on_real_images(pose, flic_val):
    from deeppose.tools.data.datasets import load_image
    from deeppose.tools.eval.metrics import pdj
    gt = flic_val.poses()                                        # (N, k, 2)
    best = []
    for i, e in enumerate(flic_val.examples):
        joints, b0 = pose(load_image(e.image_path))
        assert joints.ndim == 3 and joints.shape[1:] == (11, 2) and b0.shape == (len(joints), 4)
        assert len(joints) >= 1 and np.isfinite(joints).all()    # fallback "frame": never empty
        err = np.nanmean(np.linalg.norm(joints - gt[i][None], axis=-1), axis=1)
        best.append(joints[int(np.argmin(err))])                 # the labelled person among those found
    score = pdj(np.stack(best), gt, flic_val.skeleton, [0.2]).mean_at(0.2)
    assert score >= 0.6, score                                   # the shipped model: 0.79 on all of val


def test_pose_is_the_cascade_on_the_detected_boxes(pose, flic_weights, flic_val):
    from deeppose.tools.data.datasets import load_image
    image = load_image(flic_val.examples[0].image_path)
    est = pose.estimate(image)
    cascade, _ = load_cascade(flic_weights, "onnxruntime", threads=1)
    ref = cascade.run(image, est.b0)
    # the same boxes, crops and networks (the pipeline's batch may have held candidates it dropped)
    assert np.allclose(est.joints, ref.poses, atol=1e-3) and np.allclose(est.stage_joints, ref.stage_poses, atol=1e-3)
    assert est.sources and set(est.sources) <= {"face", "frame"}
    assert pose.joints[:3] == ("l_shoulder", "l_elbow", "l_wrist") and pose.backend.startswith("onnxruntime")


def test_bad_input_and_options_are_one_line_errors(pose, flic_weights):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 BGR image"):
        pose(np.zeros((40, 40), np.uint8))
    with pytest.raises(ValueError, match="stages must be in 1..3"):
        Pose(flic_weights, stages=4)
    with pytest.raises(ValueError, match="fallback"):
        Pose(flic_weights, fallback="everywhere")


def test_stages_and_no_face(flic_weights, flic_val):
    from deeppose.tools.data.datasets import load_image
    blank = np.zeros((240, 320, 3), np.uint8)
    with Pose(flic_weights, stages=1, threads=1) as p:
        joints, b0 = p(blank)                                    # no face, no fallback: nobody
        assert joints.shape == (0, 11, 2) and b0.shape == (0, 4)
        est = p.estimate(load_image(flic_val.examples[1].image_path))
        assert len(est.joints) >= 1 and est.stage_joints.shape == (1, len(est.joints), 11, 2)
    with pytest.raises(ValueError, match="closed"):
        p(blank)


def test_smoother_follows_and_smooths_real_frames(pose):
    require_data("videos", "walking.mp4")
    from deeppose.tools.data.datasets import read_frames
    frames = read_frames(WALKING, 12, start=30)
    smoother = PoseSmoother()
    raw, smooth, ids = [], [], []
    for i, frame in enumerate(frames):
        joints, b0 = pose(frame)
        pid, s = smoother(joints, b0, i / 30.0)
        assert s.shape == joints.shape and pid.shape == (len(joints),)
        k = int(np.argmax(b0[:, 2])) if len(b0) else None       # the walking person: the largest box
        if k is not None:
            raw.append(joints[k])
            smooth.append(s[k])
            ids.append(int(pid[k]))
    assert len(ids) >= 10 and len(set(ids)) == 1, ids             # one person, one id
    jitter = lambda x: np.abs(np.diff(np.stack(x), n=2, axis=0)).mean()   # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(raw), (jitter(smooth), jitter(raw))
    # smoothing, not a different pose: it may lag a one-frame jump of a joint, never by a
    # quarter of the person's diam (shoulder to opposite hip, about 300 px here)
    diam = np.linalg.norm(np.stack(raw)[:, 0] - np.stack(raw)[:, 7], axis=-1)
    lag = np.linalg.norm(np.stack(smooth) - np.stack(raw), axis=-1).max(axis=1)
    assert (lag < 0.25 * diam).all(), (lag, diam)
    with pytest.raises(ValueError, match="expected joints"):
        smoother(np.zeros((2, 11, 2)), np.zeros((1, 4)), 1.0)


def test_readme_example_runs_as_written(flic_val, tmp_path):
    """The README's library example, with its image path pointed at a FLIC image, run from
    another folder."""
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "from deeppose import Pose" in b)
    assert len([ln for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]) <= 5
    code = block.replace('"person.jpg"', repr(str(flic_val.examples[0].image_path)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "l_shoulder" in out.stdout and "nose" in out.stdout


@pytest.fixture(scope="module")
def walking_every_10th():
    """Frames 0, 10, ..., 140 of walking.mp4 (1280x720; the walker's face is about 52 px)."""
    require_data("videos", "walking.mp4")
    import cv2
    cap = cv2.VideoCapture(str(WALKING))
    frames = []
    try:
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if n % 10 == 0:
                frames.append((n, frame))
            n += 1
    finally:
        cap.release()
    assert len(frames) == 15
    return frames


def test_pose_finds_the_persons_of_the_video_search_on_real_frames(flic_weights, walking_every_10th):
    """Issue 23.7: Pose() ran only BlazeFace's whole-frame pass, which misses the walker's
    52 px face in a 1280x720 frame, and found nobody on all 15 frames. It must find the
    persons the video command's search finds on a first frame, with the skeletons on them."""
    import json

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.detection.boxes import box_iou
    from deeppose.engine.detection.faces import face_size
    from deeppose.engine.detection.persons import joints_face
    from deeppose.engine.pipeline import PosePipeline
    labels = {a["frame"]: a["persons"] for a in json.loads((TEST_DATA / "walking_persons.json").read_text())[
        "annotations"]}
    api_counts, search_counts = [], []
    video_config = PipelineConfig(flic_weights, smooth=False, threads=1)
    with Pose(flic_weights, threads=1) as pose, PosePipeline(video_config) as video:
        params = video.scaler.extra.get("joints_face")
        for n, frame in walking_every_10th:
            est = pose.estimate(frame)
            p = len(est.joints)
            assert est.joints.shape == (p, 11, 2) and est.b0.shape == (p, 4) and np.isfinite(est.joints).all()
            assert est.sources == ["face"] * p and est.faces.shape == (p, 4) and est.scores.shape == (p,)
            video.reset()
            search = video.detector.detect(frame)            # the video command's search on a first frame
            api_counts.append(p)
            search_counts.append(len(search))
            assert p >= 1, f"frame {n}: nobody found"
            # the same search: every face Pose found is one the video command's search finds
            assert (box_iou(est.faces, search.faces).max(axis=1) > 0.9).all(), (n, est.faces, search.faces)
            # the walker (the largest face, in the middle) is found, and his skeleton's eyes and
            # nose land on his face, the shoulders below it
            k = int(np.argmax(face_size(est.faces)))
            face, s = est.faces[k], face_size(est.faces[k])
            assert 500 < face[0] < 900 and s > 40, (n, face)
            implied = joints_face(est.joints[k], pose.skeleton, params)
            assert np.linalg.norm(implied[:2] - face[:2]) < 0.5 * s, (n, implied, face)
            shoulders = est.joints[k, [pose.joints.index("l_shoulder"), pose.joints.index("r_shoulder")]]
            assert (shoulders[:, 1] > face[1] + 0.25 * s).all(), (n, shoulders, face)
            if n in labels:   # hand-labelled heads: every skeleton's face is on a person's head
                heads = np.array([q["head"] for q in labels[n]], float)
                for f in est.faces:
                    d = np.linalg.norm(heads[:, :2] - f[:2], axis=1) / face_size(heads)
                    assert d.min() < 0.6, (n, f, heads)
    assert sum(api_counts) >= 0.9 * sum(search_counts), (api_counts, search_counts)
    from deeppose.engine.tracking.tracker import PersonTracker
    with pytest.raises(ValueError, match="confirm on one detection"):
        PosePipeline(PipelineConfig(flic_weights, still=True), tracker=PersonTracker(confirm_hits=3))



def test_smoother_keeps_two_persons_with_identical_boxes_apart():
    """Issue 23.8: PoseSmoother mapped detections to tracks by ``b0.tobytes()``, so two persons
    with the same box shared one id and one filter. Two persons, one box, their order in
    the input changing: two ids, each stable, each person's joints smoothed on their own."""
    rng = np.random.default_rng(3)
    shape = rng.uniform(-60.0, 60.0, (11, 2))
    people = [shape + (300.0, 300.0), 0.8 * shape[::-1] + (400.0, 330.0)]   # two poses, 100 px apart
    box = np.array([350.0, 320.0, 420.0, 420.0])
    smoother = PoseSmoother()
    seen: list[list[int]] = [[], []]
    for f in range(12):
        now = [q + (2.0 * f, 1.0 * f) + rng.normal(0.0, 1.0, q.shape) for q in people]
        order = [0, 1] if f % 3 else [1, 0]
        ids, smooth = smoother(np.stack([now[i] for i in order]), np.stack([box, box]), f / 30.0)
        assert ids.shape == (2,) and smooth.shape == (2, 11, 2)
        assert ids[0] != ids[1], (f, ids)
        for pos, who in enumerate(order):
            seen[who].append(int(ids[pos]))
            # smoothed on its own: within a few pixels of this person's joints (the other's are ~100 px away)
            assert np.linalg.norm(smooth[pos] - now[who], axis=1).max() < 12.0, (f, who)
    assert len(set(seen[0])) == 1 and len(set(seen[1])) == 1 and seen[0][0] != seen[1][0], seen
