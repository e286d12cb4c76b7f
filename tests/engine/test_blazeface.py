"""BlazeFace on LiteRT (engine/detection/blazeface.py): its anchors and weighted NMS, and its faces against
MediaPipe Tasks' FaceDetector on real FLIC frames and walking.mp4."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from deeppose.engine.detection.blazeface import BlazeFaceError, ssd_anchors, weighted_nms
from deeppose.engine.detection.faces import DetectorError, FaceDetector, resolve_face_runtime
from support import DATA, WALKING

needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="ai-edge-litert is not installed (the MediaPipe runtime is used)")


def test_ssd_anchors_follow_mediapipe_layout():
    """Full range: 48 x 48 cells, one anchor each, row by row; short range: 16 x 16 x 2 then
    8 x 8 x 6, as MediaPipe's SsdAnchorsCalculator lays them out."""
    full = ssd_anchors(192)
    assert full.shape == (2304, 2)
    np.testing.assert_allclose(full[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(full[1], [1.5 / 48, 0.5 / 48])      # x runs fastest
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])
    short = ssd_anchors(128)
    assert short.shape == (896, 2)
    np.testing.assert_allclose(short[0:2], [[0.5 / 16, 0.5 / 16]] * 2)
    np.testing.assert_allclose(short[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    with pytest.raises(BlazeFaceError, match="224x224"):
        ssd_anchors(224)


def test_weighted_nms_blends_overlapping_detections_by_score():
    """Detections overlapping the best one by IoU above the threshold are merged into their
    score-weighted mean (box and keypoints) with the best score; a separate face stays."""
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    kps = np.stack([boxes[:, :2], boxes[:, 2:]], axis=1)          # (3, 2, 2): the two corners
    scores = np.array([0.6, 0.9, 0.7])
    out_b, out_k, out_s = weighted_nms(boxes, kps, scores, 0.3)
    np.testing.assert_allclose(out_s, [0.9, 0.7])
    blend = (0.6 * boxes[0] + 0.9 * boxes[1]) / 1.5
    np.testing.assert_allclose(out_b, [blend, boxes[2]])
    np.testing.assert_allclose(out_k[0], blend.reshape(2, 2))
    # Above the IoU threshold nothing merges.
    out_b, _, out_s = weighted_nms(boxes, kps, scores, 0.9)
    assert len(out_b) == 3 and list(out_s) == [0.9, 0.7, 0.6]
    empty = weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0), 0.3)
    assert [a.shape for a in empty] == [(0, 4), (0, 6, 2), (0,)]


def _views() -> list[np.ndarray]:
    """Real images: 24 FLIC frames, 6 walking.mp4 frames and a 300 px window (a strided view)
    and a 480 px tile of each, as the face search passes them."""
    flic = sorted((DATA / "flic" / "images").glob("*.jpg"))[::150][:24]
    cap = cv2.VideoCapture(str(WALKING))
    frames = []
    for i in range(144):
        ok, frame = cap.read()
        if ok and i % 24 == 0:
            frames.append(frame)
    cap.release()
    if len(flic) < 24 or len(frames) < 6:
        pytest.skip(f"FLIC images or walking.mp4 not found under {DATA}")
    return ([cv2.imread(str(p)) for p in flic] + frames + [f[100:400, 600:900] for f in frames]
            + [np.ascontiguousarray(f[0:480, 400:880]) for f in frames])


@needs_litert
@pytest.mark.parametrize("model, at_least, max_px", [("full", 40, 2.0), ("short", 10, 3.0)])   # short: near faces only
def test_litert_faces_match_mediapipe(model, at_least, max_px):
    """Every face either runtime scores at least 0.55 the other finds too, its box within 2 px
    (3 px with the short-range model; most of them identical: the same truncated pixel box and half-pixel shift), its keypoints
    within 10% of the face size (median 1%) and its score within 0.03 (measured: boxes 1 px at
    the 99th percentile, scores 0.016); faces near the threshold may differ, as their scores do,
    and so may a face blended (weighted NMS) with a detection near it."""
    views = _views()
    kp_error, box_error = [], []
    with FaceDetector(model, 0.45, runtime="mediapipe") as mp, FaceDetector(model, 0.45, runtime="litert") as lite:
        assert (mp.runtime, lite.runtime) == ("mediapipe", "litert")
        for view in views:
            faces = [det.detect_with_keypoints(view) for det in (mp, lite)]
            for (fa, sa, ka), (fb, sb, kb) in (faces, faces[::-1]):
                for i in np.flatnonzero(sa >= 0.55):
                    dist = np.abs(fb - fa[i]).max(axis=1) if len(fb) else np.array([np.inf])
                    j = int(np.argmin(dist))
                    assert dist[j] <= max_px, (model, view.shape, fa[i], fb)
                    box_error.append(dist[j])
                    assert abs(sb[j] - sa[i]) <= 0.03, (model, sa[i], sb[j])
                    kp_error.append(np.abs(kb[j] - ka[i]).max() / fa[i, 2])
                    assert kp_error[-1] <= 0.1, (model, ka[i], kb[j])
    assert len(kp_error) >= at_least, f"only {len(kp_error)} faces compared: the check would say little"
    assert np.median(kp_error) <= 0.01
    # whole-pixel boxes, identical in 72% (full) and 88% (short) of the pairs measured; at least half
    assert np.mean(np.asarray(box_error) == 0) >= 0.5, np.round(box_error, 1)


@needs_litert
def test_litert_runtime_is_the_default_and_refuses_bad_input():
    """With ai-edge-litert installed "auto" runs LiteRT; gray, one-channel and BGRA images give
    the faces of their BGR equivalents; an unknown runtime, a non-uint8 or empty image and a
    closed detector are clear errors."""
    assert resolve_face_runtime() == "litert"
    with FaceDetector(threads=1) as det:
        assert det.runtime == "litert" and det._detector.threads == 1
        assert [a.shape for a in det.detect_with_keypoints(np.zeros((90, 160, 3), np.uint8))] == [(0, 4), (0,), (0, 6, 2)]
        # A FLIC frame whose face is found in gray too.
        frame, gray, expected = next((v, g, e) for v in _views()[:24] for g in [cv2.cvtColor(v, cv2.COLOR_BGR2GRAY)]
                                     for e in [det.detect(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))] if len(e[0]))
        seen = []
        run = det._detector.detect
        det._detector.detect = lambda image: (seen.append(image.copy()), run(image))[1]
        for variant in (gray, gray[..., None], cv2.cvtColor(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2BGRA)):
            got = det.detect(variant)
            # The network sees the very same BGR bytes (exact: the conversions only copy
            # channels), so the faces are the same: equal here, but LiteRT's float outputs are
            # held to a bound, not to their bits: one whole pixel of the truncated boxes, 1e-5 of
            # the score; a face found elsewhere or scored from other pixels is far outside it.
            np.testing.assert_array_equal(seen[-1], cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1.0)
            np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=1e-5)
        del det._detector.detect
        with pytest.raises(ValueError, match="uint8"):
            det.detect(np.zeros((90, 160, 3), np.float32))
        with pytest.raises(DetectorError, match="0x90 image"):
            det.detect(np.zeros((90, 0, 3), np.uint8))
        inner = det._detector
    with pytest.raises(DetectorError, match="closed"):
        det.detect(frame)
    with pytest.raises(BlazeFaceError, match="closed"):
        inner.detect(frame)
    with pytest.raises(DetectorError, match="runtime must be one of") as e:
        FaceDetector(runtime="tflite")
    assert "\n" not in str(e.value)


def test_auto_runtime_falls_back_to_mediapipe_without_litert(monkeypatch):
    """Where ai-edge-litert is missing or does not import, "auto" runs MediaPipe, and asking for
    "litert" is a one-line error that says what to install."""
    from deeppose.engine.detection import faces as face_detector

    monkeypatch.setattr(face_detector, "_litert_imports", lambda: False)
    assert resolve_face_runtime() == "mediapipe"
    with FaceDetector("short") as det:
        assert det.runtime == "mediapipe"
    with pytest.raises(DetectorError, match="pip install ai-edge-litert") as e:
        FaceDetector(runtime="litert")
    assert "\n" not in str(e.value)


@needs_litert
def test_a_model_that_is_not_blazeface_is_refused(tmp_path):
    """A TFLite model that is not BlazeFace (the peer's pose detector, 224 px input) is refused
    in one line that names the file and its input shape."""
    import zipfile

    task = DATA.parent / "models" / "peers" / "pose_landmarker_full.task"
    if not task.is_file():
        pytest.skip(f"no TFLite model other than BlazeFace at hand ({task} not found)")
    with zipfile.ZipFile(task) as z:
        name = next(n for n in z.namelist() if n.endswith("detector.tflite"))
        other = tmp_path / "other.tflite"
        other.write_bytes(z.read(name))
    with pytest.raises(DetectorError, match=r"not a BlazeFace face detection model \(input \(1, 224, 224, 3\)") as e:
        FaceDetector(other, runtime="litert")
    assert "\n" not in str(e.value) and "other.tflite" in str(e.value)


def test_weighted_nms_outputs_a_zero_area_detection_alone():
    """A zero-area box overlaps nothing, itself included: it is output alone and the others go on."""
    boxes = np.array([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 10.0]])
    out_b, out_k, out_s = weighted_nms(boxes, np.zeros((2, 6, 2)), np.array([0.9, 0.8]), 0.3)
    np.testing.assert_allclose(out_b, boxes)
    np.testing.assert_allclose(out_s, [0.9, 0.8])


def test_face_cache_made_by_the_other_runtime_is_discarded(tmp_path):
    """Dataset face detections cached by one runtime are not reused by the other (their scores
    differ slightly, which moves faces across the threshold); the same runtime reuses them."""
    from deeppose.engine.detection.faces import resolve_face_model
    from deeppose.tools.data.person_boxes import FaceCache

    path, model = tmp_path / "faces.npz", resolve_face_model("full")
    cache = FaceCache(path, model, 0.5, runtime="mediapipe")
    cache.put("a.jpg", (np.array([[10.0, 10.0, 4.0, 4.0]]), np.array([0.9]), np.zeros((1, 6, 2))))
    cache.save()
    assert FaceCache(path, model, 0.5, runtime="mediapipe").get("a.jpg") is not None
    assert FaceCache(path, model, 0.5, runtime="litert").get("a.jpg") is None
