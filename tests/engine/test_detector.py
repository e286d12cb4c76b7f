"""The person detector that gives b0 (engine/detection/persons.py), the scaler fit (tools/data/fit_scaler.py) and
the per-example b0 of training and evaluation (tools/data/person_boxes.py), on the real shared data."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from deeppose.engine.detection.faces import DEFAULT_FACE_MODEL, FACE_MODEL_DIR, DetectorError, FaceDetector
from deeppose.engine.detection.persons import FaceScaler, FullFrameDetector, PersonDetector, frame_box
from deeppose.tools.data import fit_scaler
from deeppose.tools.data.datasets import default_data_root, load_dataset, load_image
from deeppose.tools.data.person_boxes import detect_dataset_faces, example_b0, match_dataset, match_faces
from support import WEIGHTS_FLIC

FLIC_ROOT = default_data_root("flic")
LSP_ROOT = default_data_root("lsp")
needs_flic = pytest.mark.skipif(not (FLIC_ROOT / "examples.mat").is_file(), reason=f"FLIC not found at {FLIC_ROOT}")
needs_lsp = pytest.mark.skipif(not (LSP_ROOT / "joints.mat").is_file(), reason=f"LSP not found at {LSP_ROOT}")


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


@pytest.fixture(scope="module")
def flic_train():
    return load_dataset("flic", None, "train")


def _subset(ds, n):
    return dataclasses.replace(ds, examples=ds.examples[:n])


def _fitted_scaler() -> FaceScaler:
    path = WEIGHTS_FLIC / "scaler.json"
    if path.is_file():
        return FaceScaler.from_dict(json.loads(path.read_text()))
    manifest = WEIGHTS_FLIC / "manifest.json"
    if manifest.is_file():
        scaler = json.loads(manifest.read_text()).get("scaler")
        if scaler and "fit" in scaler:
            return FaceScaler.from_dict(scaler)
    pytest.skip("no fitted scaler in weights/flic (run: python main.py fit-scaler)")


@needs_flic
def test_face_found_in_flic_frame_and_b0_holds_joints(detector, flic_train):
    """The first FLIC training example: its labelled face is detected, and b0 from the shipped
    scaler contains all its joints; the PersonDetector gives the same b0."""
    scaler = _fitted_scaler()
    ex = flic_train.examples[0]
    image = load_image(ex.image_path)
    faces, scores = detector.detect(image)
    assert faces.shape[1:] == (4,) and scores.shape == (len(faces),)
    j = match_faces(ex, faces)
    assert j is not None, f"face of {ex.image_path.name} not found: {faces}"
    assert scores[j] >= scaler.min_confidence
    # the nose lies inside the detected face box
    nose = ex.pose[flic_train.skeleton.index("nose")]
    assert np.all(np.abs(nose - faces[j, :2]) <= faces[j, 2:] / 2)
    b0 = scaler.apply(faces[j:j + 1])
    assert fit_scaler.joints_inside(ex.pose[None], b0)[0], (ex.pose, b0)
    with PersonDetector(scaler, detector) as persons:
        found = persons.detect(image)
    k = int(np.argmin(np.linalg.norm(found.faces[:, :2] - faces[j, :2], axis=1)))
    np.testing.assert_allclose(found.b0[k], b0[0])
    assert found.sources[k] == "face"


@needs_flic
def test_scaler_fit_reproducible_and_cached(flic_train, tmp_path, monkeypatch, capsys):
    """fit-scaler end to end on 40 FLIC training examples: twice (fresh detections, then the
    cache) gives identical scalers; the target coverage is met on that subset."""
    subset = _subset(flic_train, 40)
    from deeppose import tools

    monkeypatch.setattr(tools.data.datasets, "load_dataset", lambda name, root, split: subset if split == "train"
                        else _subset(load_dataset(name, root, split), 10))
    results = []
    for run in range(2):
        out = tmp_path / f"scaler{run}.json"
        args = argparse.Namespace(dataset="flic", data=None, face_model="full", fit=None, out=str(out), coverage=0.9,
                                  min_confidence=0.5,
                                  cache_dir=str(tmp_path / "cache"), no_progress=True, command="fit-scaler")
        assert fit_scaler.run(args) == 0
        results.append(json.loads(out.read_text()))
        results[-1]["fit"].pop("seconds")
    assert (tmp_path / "cache" / "faces_flic_full_tiles.npz").is_file()
    assert results[0] == results[1]
    fit = results[0]["fit"]
    assert fit["examples"] == 40 and fit["split"] == "train"
    assert 0.5 < fit["recall_train"]["full"] <= 1.0
    assert fit["recall_train"]["short"] <= fit["recall_train"]["full"]
    assert fit["coverage_train"] >= 0.9
    assert results[0]["face_model"] == DEFAULT_FACE_MODEL and results[0]["min_confidence"] == 0.5
    assert "recall" in capsys.readouterr().out
    # the cache holds exactly what the multi-scale search of a still image gives
    from deeppose.engine.detection.search import TrackingFaceDetector

    dets = detect_dataset_faces(subset, "full", cache_dir=tmp_path / "cache", progress=False)
    with FaceDetector() as det:
        fresh = TrackingFaceDetector(det).detect_with_keypoints(load_image(subset.examples[3].image_path))
    for a, b in zip(dets[3], fresh):
        np.testing.assert_allclose(a, b)


def test_fit_box_least_area():
    """Greedy peeling: the box holds >= coverage of the extents, exactly the extreme values at
    coverage 1, and a far outlier is what gets dropped first."""
    rng = np.random.default_rng(0)
    ext = np.column_stack([-rng.uniform(1, 2, 99), rng.uniform(1, 2, 99), -rng.uniform(0, 1, 99), rng.uniform(3, 5, 99)])
    ext = np.vstack([ext, [-20, 1, -0.5, 4]])  # one example far out on the left
    box, kept = fit_scaler.fit_box(ext, 1.0)
    np.testing.assert_allclose(box, [ext[:, 0].min(), ext[:, 1].max(), ext[:, 2].min(), ext[:, 3].max()], atol=1e-5)
    assert kept.all()
    box, kept = fit_scaler.fit_box(ext, 0.99)
    assert kept.sum() == 99 and not kept[-1]
    a, b, c, d = box
    assert (ext[kept, 0] >= a).all() and (ext[kept, 1] <= b).all() and (ext[kept, 2] >= c).all() and (ext[kept, 3] <= d).all()
    assert a > -2.0001
    s = fit_scaler.scaler_from_box(box, DEFAULT_FACE_MODEL, 0.5)
    b0 = s.apply(np.array([[100.0, 50.0, 10.0, 10.0]]))[0]
    np.testing.assert_allclose(b0, [100 + 10 * (a + b) / 2, 50 + 10 * (c + d) / 2, 10 * (b - a), 10 * (d - c)])
    with pytest.raises(ValueError):
        fit_scaler.fit_box(ext[:0], 0.99)


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_falls_back_to_full_frame(detector, kind):
    """No face: fallback="frame" gives the whole frame as b0 (source "frame"); no fallback, P = 0."""
    h, w = 240, 320
    image = np.zeros((h, w, 3), np.uint8) if kind == "blank" else np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    faces, scores = detector.detect(image)
    assert faces.shape == (0, 4) and scores.shape == (0,)
    persons = PersonDetector(FaceScaler(0.0, 2.5, 7.0, 6.0), detector)
    still = persons.detect(image, fallback="frame")
    assert still.sources == ["frame"] and len(still) == 1
    np.testing.assert_allclose(still.b0[0], [(w - 1) / 2, (h - 1) / 2, w, h])
    np.testing.assert_allclose(still.b0[0], frame_box(w, h))
    assert np.isnan(still.faces).all() and still.scores[0] == 0
    video = persons.detect(image)
    assert len(video) == 0 and video.b0.shape == (0, 4) and video.sources == []
    with pytest.raises(ValueError):
        persons.detect(image, fallback="nearest")


@pytest.mark.parametrize("runtime", ["litert", "mediapipe"])
def test_bad_model_is_one_line_error(tmp_path, capfd, runtime):
    """Missing or corrupt model files raise a one-line DetectorError naming the file; a good
    model loads without LiteRT's or MediaPipe's start-up chatter on stderr (both runtimes)."""
    if runtime == "litert" and importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai-edge-litert is not installed")
    with pytest.raises(DetectorError, match="missing") as e:
        FaceDetector(tmp_path / "nope.tflite", runtime=runtime)
    assert "\n" not in str(e.value) and "nope.tflite" in str(e.value)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DetectorError, match="cannot load face model") as e:
        FaceDetector(corrupt, runtime=runtime)
    assert "\n" not in str(e.value) and "corrupt.tflite" in str(e.value)
    capfd.readouterr()
    with FaceDetector("short", runtime=runtime) as det:
        for _ in range(3):
            det.detect(np.zeros((64, 64, 3), np.uint8))
    err = capfd.readouterr().err
    assert "Sparsity" not in err and "INFO:" not in err and "not aligned" not in err, err
    assert (FACE_MODEL_DIR / DEFAULT_FACE_MODEL).is_file()


def test_native_stderr_filter_is_thread_safe_and_reentrant(capfd, monkeypatch):
    """The fd-2 filter around MediaPipe: blocks from several threads at once and a block nested
    in the same thread (a detector closed by the garbage collector inside another's block) end
    with fd 2 restored; known chatter is dropped, every other line is passed on exactly once."""
    import os
    import threading

    from deeppose.engine.detection.native_stderr import filtered_native_stderr

    def block(tag: str, nested: bool) -> None:
        with filtered_native_stderr():
            os.write(2, f"INFO: [environment.cc:36] chatter {tag}\nkept {tag}\n".encode())
            if nested:
                with filtered_native_stderr():
                    os.write(2, f"WARNING: Logging before InitGoogle() {tag}\nkept inner {tag}\n".encode())

    monkeypatch.delenv("DEEPPOSE_MEDIAPIPE_LOGS", raising=False)   # that turns the filter off
    capfd.readouterr()
    nested = threading.Thread(target=block, args=("n", True), daemon=True)
    nested.start()
    nested.join(timeout=10)
    assert not nested.is_alive(), "a nested block deadlocked"
    threads = [threading.Thread(target=block, args=(str(i), i % 2 == 0)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    os.write(2, b"after\n")
    err = capfd.readouterr().err.splitlines()
    expected = ["kept n", "kept inner n", "after"]
    for i in range(8):
        expected += [f"kept {i}"] + ([f"kept inner {i}"] if i % 2 == 0 else [])
    assert sorted(err) == sorted(expected), err


def test_scaler_dict_round_trip():
    s = FaceScaler(0.1, 2.6, 7.3, 6.3, extra={"fit": {"coverage_train": 0.99}})
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    t = FaceScaler.from_dict(d)
    assert t == s and t.extra == s.extra
    # manifests written before the face fields existed still load
    assert FaceScaler.from_dict({"scale_x": 5.0, "scale_y": 6.0, "offset_x": 0.0, "offset_y": 2.0}).face_model == DEFAULT_FACE_MODEL
    with pytest.raises(ValueError, match="scale_y"):
        FaceScaler.from_dict({"scale_x": 5.0, "offset_x": 0.0, "offset_y": 2.0})


@needs_lsp
def test_example_b0_lsp_is_full_image():
    ds = _subset(load_dataset("lsp", None, "train"), 25)
    boxes, sources = example_b0(ds, None)
    assert boxes.shape == (25, 4) and sources == ["frame"] * 25
    for ex, box in zip(ds.examples[:3], boxes):
        h, w = load_image(ex.image_path).shape[:2]
        np.testing.assert_allclose(box, [(w - 1) / 2, (h - 1) / 2, w, h])
    # with the full-body scaler: the face matched to the labelled head, else (training) the face
    # the head implies
    boxes, sources = example_b0(ds, {"scale_x": 5.0, "scale_y": 6.0, "offset_x": 0.0, "offset_y": 2.0},
                                progress=False)
    assert set(sources) == {"face", "head"} and np.isfinite(boxes).all()


@needs_flic
def test_example_b0_flic_face_and_joints(flic_train, tmp_path):
    """FLIC b0: scaled matched face where detected ("face"), else the face implied by the
    labelled eyes and nose, scaled the same way ("joints")."""
    ds = _subset(flic_train, 12)  # examples 5 and 6 have no detected face
    scaler = FaceScaler(0.12, 2.6, 7.35, 6.3)
    boxes, sources = example_b0(ds, scaler.to_dict(), cache_dir=tmp_path, progress=False)
    dets = detect_dataset_faces(ds, cache_dir=tmp_path, progress=False)
    faces, _ = match_dataset(ds, dets)
    assert set(sources) == {"face", "joints"}
    for i, src in enumerate(sources):
        if src == "face":
            np.testing.assert_allclose(boxes[i], scaler.apply(faces[i]))
        else:
            assert np.isnan(faces[i]).all()
            eyes_nose = ds.examples[i].pose[8:11]
            assert np.isfinite(boxes[i]).all() and boxes[i][2] > 0
            # the implied face sits on the eyes and nose: b0's top edge lies above them
            assert boxes[i][1] - boxes[i][3] / 2 < eyes_nose[:, 1].min()



class _OneFace:
    """A face detector stand-in that finds the given faces (N, 4) in any image."""

    def __init__(self, faces):
        self.faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)

    def detect(self, image):
        return self.faces, np.ones(len(self.faces))


@needs_flic
def test_example_b0_is_the_runtime_b0_rule(flic_train, tmp_path):
    """One b0 rule: evaluation's b0 of each example (missed="frame") is what the app's
    PersonDetector gives for a frame in which that example's face is found (or none is)."""
    ds = _subset(flic_train, 12)
    scaler = FaceScaler(0.12, 2.6, 7.35, 6.3)
    boxes, sources = example_b0(ds, scaler.to_dict(), cache_dir=tmp_path, progress=False, missed="frame")
    faces, _ = match_dataset(ds, detect_dataset_faces(ds, cache_dir=tmp_path, progress=False))
    assert set(sources) == {"face", "frame"}
    for i, ex in enumerate(ds.examples):
        w, h = ex.image_size
        found = faces[i][None] if np.isfinite(faces[i]).all() else np.zeros((0, 4))
        runtime = PersonDetector(scaler, _OneFace(found)).detect(np.zeros((h, w, 3), np.uint8), fallback="frame")
        assert runtime.sources == [sources[i]]
        np.testing.assert_allclose(runtime.b0[0], boxes[i])
    lsp_like = dataclasses.replace(ds, examples=ds.examples[:2])
    boxes, sources = example_b0(lsp_like, None)
    full = FullFrameDetector().detect(np.zeros((ds.examples[0].image_size[1], ds.examples[0].image_size[0], 3), np.uint8))
    assert sources == full.sources * 2
    np.testing.assert_allclose(boxes[0], full.b0[0])


def test_joints_face_is_the_fitted_model_batched_and_shared_with_tools():
    """engine.detection.persons.joints_face (runtime, tracking by pose) is the model tools fit and use:
    d = hypot(|le - re|, w_nose |(le + re)/2 - no|), s = ratio d, centre = mean + offset s."""
    from deeppose.engine.detection.persons import DEFAULT_JOINTS_FACE, joints_face
    from deeppose.engine.skeletons import FLIC
    from deeppose.tools.data.person_boxes import joints_face as tools_joints_face

    params = {"size_ratio": 1.8, "nose_weight": 1.75, "offset_x": -0.02, "offset_y": 0.085}
    pose = np.full((2, FLIC.k, 2), np.nan)
    le, re, no = FLIC.index("l_eye"), FLIC.index("r_eye"), FLIC.index("nose")
    pose[0, [le, re, no]] = [(110.0, 100.0), (90.0, 100.0), (100.0, 112.0)]
    pose[1, [le, re]] = [(10.0, 10.0), (0.0, 10.0)]                 # no nose: no face
    out = joints_face(pose, FLIC, params)
    s = 1.8 * np.hypot(20.0, 1.75 * 12.0)
    np.testing.assert_allclose(out[0], [100 - 0.02 * s, (100 + 100 + 112) / 3 + 0.085 * s, s, s])
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(tools_joints_face(pose[0], FLIC, params), out[0])
    assert tools_joints_face(pose[1], FLIC, params) is None
    assert joints_face(pose[0], FLIC).shape == (4,) and DEFAULT_JOINTS_FACE["size_ratio"] == 2.0


def test_face_roll_and_rotated_scaler():
    """The roll from the eyes is 0 upright and +90 degrees for a face turned clockwise on screen
    (lying with the head on the left); the scaler turns the face-to-b0 offset with it."""
    from deeppose.engine.detection.faces import face_roll

    assert face_roll(np.array([90.0, 100.0]), np.array([110.0, 100.0])) == pytest.approx(0.0)
    assert face_roll(np.array([100.0, 90.0]), np.array([100.0, 110.0])) == pytest.approx(np.pi / 2)
    scaler = FaceScaler(0.0, 2.5, 7.0, 6.0)
    face = np.array([[100.0, 100.0, 20.0, 20.0]])
    np.testing.assert_allclose(scaler.apply(face, np.zeros(1)), scaler.apply(face))
    np.testing.assert_allclose(scaler.apply(face, np.array([np.pi / 2])), [[100 - 50.0, 100.0, 140.0, 120.0]], atol=1e-9)


def test_implausible_face_keypoints_are_dropped_and_lying_faces_turn_b0():
    """A 'face' whose BlazeFace eyes and ears nearly coincide (a litter bin in walking.mp4) is
    not a face; PersonDetector drops it, and keeps faces without keypoints. With rotate=True,
    a face rolled 90 degrees (a lying person) turns its b0; an upright one does not."""
    from deeppose.engine.detection.faces import plausible_face_keypoints

    faces = np.array([[100.0, 100.0, 40.0, 40.0], [300.0, 300.0, 100.0, 100.0], [50.0, 50.0, 20.0, 20.0],
                      [100.0, 300.0, 40.0, 40.0]])
    kps = np.full((4, 6, 2), np.nan)
    kps[0] = [(92, 95), (108, 95), (100, 104), (100, 112), (83, 98), (117, 98)]     # eyes 0.4, ears 0.85
    kps[1] = [(300, 290), (305, 291), (298, 300), (295, 310), (290, 295), (322, 296)]  # eyes 0.05, ears 0.32
    kps[3] = [(108, 292), (108, 308), (96, 300), (88, 300), (112, 283), (112, 317)]    # rolled +90 degrees
    assert plausible_face_keypoints(faces, kps).tolist() == [True, False, True, True]

    class Detections:
        def detect_with_keypoints(self, image):
            return faces, np.array([0.9, 0.8, 0.7, 0.6]), kps

    scaler = FaceScaler(0.0, 2.5, 7.0, 6.0)
    persons = PersonDetector(scaler, Detections()).detect(np.zeros((400, 400, 3), np.uint8))
    np.testing.assert_allclose(persons.faces, faces[[0, 2, 3]])
    assert persons.angles is None
    rotated = PersonDetector(scaler, Detections(), rotate=True).detect(np.zeros((4, 4, 3), np.uint8))
    assert rotated.angles == pytest.approx([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(rotated.b0[2], [100.0 - 2.5 * 40, 300.0, 7.0 * 40, 6.0 * 40])   # body to the left


def test_fit_image_box_recovers_the_image_around_the_face():
    """The LSP fit: faces placed in their images by a known rule (image 7 x 13 face sizes, face
    centre 4 face sizes above the image centre) give back that rule, whatever the face size."""
    rng = np.random.default_rng(0)
    s = rng.uniform(8, 30, 200)
    sizes = np.column_stack([7 * s, 13 * s]) + 1
    faces = np.column_stack([(sizes[:, 0] - 1) / 2, (sizes[:, 1] - 1) / 2 - 4 * s, s, s])
    faces[:20, 1] += 3 * s[:20]                  # a few outliers do not move the medians
    scaler = fit_scaler.fit_image_box(faces, sizes, DEFAULT_FACE_MODEL, 0.5)
    assert (scaler.offset_x, scaler.offset_y) == pytest.approx((0.0, 4.0), abs=1e-6)
    assert (scaler.scale_x, scaler.scale_y) == pytest.approx((7.0, 13.0), abs=0.1)
    b0 = scaler.apply(faces[20:])
    np.testing.assert_allclose(b0[:, :2], (sizes[20:] - 1) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        fit_scaler.fit_image_box(faces[:0], sizes[:0], DEFAULT_FACE_MODEL, 0.5)


@needs_lsp
def test_full_body_scaler_fit_on_lsp(tmp_path, monkeypatch, capsys):
    """fit-scaler --dataset lsp end to end on 60 LSP training images: faces matched to the
    labelled heads, recall printed, a full-body b0 (taller than wide, below the face) written to
    scaler.json and into the LSP model's manifest in that folder (train and evaluation keep the
    full image: the manifest's training records are untouched)."""
    from deeppose import tools
    from deeppose.engine.model import read_manifest
    from support import make_random_model

    full = {split: load_dataset("lsp", None, split) for split in ("train", "val")}
    monkeypatch.setattr(tools.data.datasets, "load_dataset",
                        lambda name, root, split: _subset(full[split], 60 if split == "train" else 15))
    model = make_random_model(tmp_path / "lsp", stages=1, skeleton_name="lsp")
    assert read_manifest(model).scaler is None
    out = model / "scaler.json"
    args = argparse.Namespace(dataset="lsp", data=None, face_model="full", fit=None, out=str(out), coverage=0.99,
                              min_confidence=0.5, cache_dir=str(tmp_path / "cache"), no_progress=True)
    assert fit_scaler.run(args) == 0
    text = capsys.readouterr().out
    assert "LSP train" in text and "recall" in text
    fitted = json.loads(out.read_text())
    fit = fitted["fit"]
    assert fit["dataset"] == "lsp" and fit["examples"] == 60 and "median image box" in fit["method"]
    assert 0.3 < fit["recall_train"]["full"] <= 1.0 and fit["matched_examples"] == round(60 * fit["recall_train"]["full"])
    scaler = FaceScaler.from_dict(fitted)
    assert scaler.scale_y > scaler.scale_x > 3 and scaler.offset_y > 2     # a body below the face
    assert 0.3 < fitted["head_face"]["along"] < 0.8
    info = read_manifest(model)
    assert info.scaler == fitted and info.manifest.training["note"].startswith("random")
    # the coverage fit of the same faces holds the joints of (nearly) every person, in a larger box
    args.fit, args.out = "coverage", str(tmp_path / "coverage.json")
    assert fit_scaler.run(args) == 0
    cov = json.loads((tmp_path / "coverage.json").read_text())
    assert cov["fit"]["coverage_train"] >= 0.99 > fit["coverage_train"]
    assert cov["scale_x"] * cov["scale_y"] > scaler.scale_x * scaler.scale_y
    # evaluation-style b0 of LSP persons from the scaler: their face where matched, else the image
    ds = _subset(full["val"], 15)
    boxes, sources = example_b0(ds, fitted, tmp_path / "cache", progress=False, missed="frame")
    assert set(sources) <= {"face", "frame"} and "face" in sources
    for b, src, ex in zip(boxes, sources, ds.examples):
        if src == "frame":
            np.testing.assert_allclose(b, frame_box(*ex.image_size))


def test_mediapipe_import_leaves_out_matplotlib(tmp_path):
    """MediaPipe's drawing helpers import matplotlib.pyplot; the pose path imports them lazily
    (about 0.3 s of start-up and 20 MiB of resident memory), and the audio, text, decision and
    retrieval task packages too (0.11 s), yet a helper or task that is used gets the real module,
    and later code that plots gets one copy of each matplotlib module."""
    import subprocess
    import sys

    from support import REPO

    code = ("import sys, importlib\n"
            "from deeppose.engine.detection.faces import import_mediapipe\n"
            "mp, BaseOptions, vision = import_mediapipe()\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib was loaded'\n"
            "assert not {'sounddevice', 'mediapipe.tasks.python.audio.audio_classifier',\n"
            "            'mediapipe.tasks.python.text.text_classifier', 'mediapipe.tasks.python.decision.decision_maker',\n"
            "            'mediapipe.tasks.python.retrieval.semantic_retriever'} & set(sys.modules), 'other tasks loaded'\n"
            "assert vision.FaceDetector and vision.PoseLandmarksConnections.POSE_LANDMARKS\n"
            "assert not any(f.__name__ == '_LazyMediaPipeModules' for f in sys.meta_path if hasattr(f, '__name__'))\n"
            # first touches by submodule imports, as tools/eval/evaluate.py plots: one module object each
            "import matplotlib.colors\n"
            "from matplotlib.backends.backend_agg import FigureCanvasAgg\n"
            "from matplotlib.figure import Figure\n"
            "fig = Figure(); FigureCanvasAgg(fig); fig.add_subplot().plot([0, 1], color='red'); fig.savefig(sys.argv[1])\n"
            # a drawing helper used: the real modules run now
            "spec = vision.drawing_styles.get_default_pose_landmarks_style()\n"
            "assert spec and 'matplotlib.pyplot' in sys.modules\n"
            "import matplotlib.pyplot as plt\n"
            "assert isinstance(plt.get_cmap('viridis'), matplotlib.colors.Colormap)\n"
            "du = importlib.import_module('mediapipe.tasks.python.vision.drawing_utils')\n"
            "assert du is vision.drawing_utils and du.plt is plt\n"
            # the other task families load when used
            "assert mp.tasks.audio.AudioClassifier and mp.tasks.text.TextClassifier and mp.tasks.vision.FaceDetector\n"
            "import gc, types\n"
            "names = [m.__name__ for m in gc.get_objects() if isinstance(m, types.ModuleType)]\n"
            "twice = sorted({n for n in names if n.startswith(('matplotlib', 'mediapipe')) and names.count(n) > 1})\n"
            "assert not twice, twice\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "plot.png")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_ctrl_c_during_the_mediapipe_import_is_raised_after_it(tmp_path):
    """A Ctrl-C that lands inside MediaPipe's import (native initialization) is held and raised
    as KeyboardInterrupt once the import is done: raised inside, it left
    "mediapipe is not installed" and an interpreter that aborted while exiting (rc -6)."""
    import subprocess
    import sys

    from support import REPO

    # The Ctrl-C is sent from inside the import, as a MediaPipe module is found (the import
    # takes under 0.1 s now, too short to hit with a timer), in this thread (signal.raise_signal).
    # The child starts with Python's own SIGINT handler, as a program started from a terminal
    # does: a test run started in the background by a shell (`make test &`) inherits SIGINT
    # ignored, and an ignored SIGINT rightly stays ignored after the import.
    code = ("import signal, sys, threading\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from deeppose.engine.detection.faces import import_mediapipe\n"
            "fired = []\n"
            "class Kick:\n"
            "    @staticmethod\n"
            "    def find_spec(name, path=None, target=None):\n"
            "        if name == 'mediapipe.tasks.python.core':\n"
            "            fired.append(threading.current_thread().name)\n"
            "            signal.raise_signal(signal.SIGINT)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Kick)\n"
            "try:\n"
            "    import_mediapipe()\n"
            "except KeyboardInterrupt:\n"
            "    assert 'mediapipe.tasks.python.vision' in sys.modules\n"
            "    print('held'); sys.exit(3)\n"
            "print('not raised, sent in', fired)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and proc.stdout.strip() == "held", (proc.returncode, proc.stdout, proc.stderr[-2000:])
