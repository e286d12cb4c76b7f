"""BlazeFace on LiteRT (engine/blazeface.py): its anchors and weighted NMS, and its faces against
MediaPipe Tasks' FaceDetector on real FLIC frames and walking.mp4."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from deeppose.engine.blazeface import BlazeFaceError, ssd_anchors, weighted_nms
from deeppose.engine.face_detector import DetectorError, FaceDetector, resolve_face_runtime

from conftest import DATA, WALKING

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
@pytest.mark.parametrize("model, at_least", [("full", 40), ("short", 10)])   # short range: near faces only
def test_litert_faces_match_mediapipe(model, at_least):
    """Every face either runtime scores at least 0.55 the other finds too, its box within 3 px,
    its keypoints within 10% of the face size (median 1%) and its score within 0.03 (measured:
    boxes 1 px at the 99th percentile, scores 0.016); faces near the threshold may differ, as
    their scores do, and so may a face blended (weighted NMS) with a detection near it."""
    views = _views()
    kp_error = []
    with FaceDetector(model, 0.45, runtime="mediapipe") as mp, FaceDetector(model, 0.45, runtime="litert") as lite:
        assert (mp.runtime, lite.runtime) == ("mediapipe", "litert")
        for view in views:
            faces = [det.detect_with_keypoints(view) for det in (mp, lite)]
            for (fa, sa, ka), (fb, sb, kb) in (faces, faces[::-1]):
                for i in np.flatnonzero(sa >= 0.55):
                    dist = np.abs(fb - fa[i]).max(axis=1) if len(fb) else np.array([np.inf])
                    j = int(np.argmin(dist))
                    assert dist[j] <= 3.0, (model, view.shape, fa[i], fb)
                    assert abs(sb[j] - sa[i]) <= 0.03, (model, sa[i], sb[j])
                    kp_error.append(np.abs(kb[j] - ka[i]).max() / fa[i, 2])
                    assert kp_error[-1] <= 0.1, (model, ka[i], kb[j])
    assert len(kp_error) >= at_least, f"only {len(kp_error)} faces compared: the check would say little"
    assert np.median(kp_error) <= 0.01


@needs_litert
def test_litert_runtime_is_the_default_and_refuses_bad_input():
    """With ai-edge-litert installed "auto" runs LiteRT (gray images too); an unknown runtime
    and a non-uint8 image are clear errors."""
    assert resolve_face_runtime() == "litert"
    with FaceDetector() as det:
        assert det.runtime == "litert"
        assert [a.shape for a in det.detect_with_keypoints(np.zeros((90, 160, 3), np.uint8))] == [(0, 4), (0,), (0, 6, 2)]
        gray = det.detect(np.zeros((90, 160), np.uint8))
        assert gray[0].shape == (0, 4)
        with pytest.raises(ValueError, match="uint8"):
            det.detect(np.zeros((90, 160, 3), np.float32))
        with pytest.raises(DetectorError, match="0x90 image"):
            det.detect(np.zeros((90, 0, 3), np.uint8))
    with pytest.raises(DetectorError, match="runtime must be one of") as e:
        FaceDetector(runtime="tflite")
    assert "\n" not in str(e.value)
