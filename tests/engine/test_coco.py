"""COCO keypoints files (engine/coco.py, ``video --keypoints FILE.coco.json``): the mapping to COCO's
17 keypoints, visibility, bbox, scores, and files that pycocotools loads and evaluates."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from deeppose.engine.coco import COCO_KEYPOINTS, COCO_SKELETON, CocoWriter, coco_bbox, coco_mapping
from deeppose.engine.pipeline import FrameResult, PersonResult
from deeppose.engine.skeletons import BODY, FLIC, LSP
from support import WEIGHTS_FLIC, require_data
from support.clips import walking_frames, write_clip

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def load(path: Path) -> COCO:
    return COCO(str(path))


def test_mapping_names_and_counts():
    assert len(COCO_KEYPOINTS) == 17 and len(COCO_SKELETON) == 19
    flic, lsp, body = coco_mapping(FLIC), coco_mapping(LSP), coco_mapping(BODY)
    assert (flic >= 0).sum() == 11 and (lsp >= 0).sum() == 12 and (body >= 0).sum() == 15
    named = {c: FLIC.joints[j] for c, j in zip(COCO_KEYPOINTS, flic) if j >= 0}
    assert named["left_wrist"] == "l_wrist" and named["nose"] == "nose" and named["right_eye"] == "r_eye"
    assert "left_knee" not in named and "left_ear" not in named
    lsp_named = {c: LSP.joints[j] for c, j in zip(COCO_KEYPOINTS, lsp) if j >= 0}
    assert lsp_named["right_ankle"] == "r_ankle" and "nose" not in lsp_named   # neck, head_top left out


def test_bbox_is_b0_in_corner_coordinates_clipped_to_the_image():
    assert coco_bbox([100.0, 50.0, 40.0, 20.0], 640, 480) == [80.5, 40.5, 40.0, 20.0]
    assert coco_bbox([620.0, 460.0, 100.0, 100.0], 640, 480) == [570.5, 410.5, 69.5, 69.5]
    assert coco_bbox([10.0, 10.0, 100.0, 100.0], 640, 480) == [0.0, 0.0, 60.5, 60.5]


def _lsp_person(track_id: int, confidence=None) -> PersonResult:
    pose = np.column_stack([np.linspace(250, 390, LSP.k), np.linspace(60, 300, LSP.k)])
    pose[LSP.index("r_ankle")] = (260.0, 500.0)          # below the 640x480 frame
    return PersonResult(track_id, np.array([320.0, 240.0, 300.0, 560.0]), None, "face", pose[None], pose,
                        0.875, True, 0.0, confidence)


def test_writer_fields_visibility_and_scores(tmp_path):
    path = tmp_path / "run.coco.json"
    writer = CocoWriter(path, LSP, {"video": "run.pose.mp4", "source": "run.mp4", "fps": 25.0,
                                    "width": 640, "height": 480})
    conf = np.linspace(0.1, 0.8, LSP.k)
    writer.write(FrameResult(0, 0.0, [_lsp_person(3)], 0.0, [0.0], 0.0, "torch", (640, 480), 1))
    writer.write(FrameResult(1, 0.04, [], 0.0, [0.0], 0.0, "torch", (640, 480), 1))
    writer.write(FrameResult(2, 0.08, [_lsp_person(3, conf), _lsp_person(5)], 0.0, [0.0], 0.0, "torch", (640, 480), 1))
    assert not path.exists()            # written when closed
    writer.close()
    writer.close()                      # idempotent
    doc = json.loads(path.read_text())
    assert [im["file_name"] for im in doc["images"]] == ["run/000000.jpg", "run/000001.jpg", "run/000002.jpg"]
    assert [im["id"] for im in doc["images"]] == [1, 2, 3]
    assert [im["frame_index"] for im in doc["images"]] == [0, 1, 2]
    assert doc["categories"][0]["keypoints"] == list(COCO_KEYPOINTS)
    assert doc["info"]["deeppose"]["coco_from_joint"]["left_knee"] == "l_knee"
    anns = doc["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3] and [a["image_id"] for a in anns] == [1, 3, 3]
    assert [a["track_id"] for a in anns] == [3, 3, 5]
    a = anns[0]
    kp = np.array(a["keypoints"]).reshape(17, 3)
    mapping = coco_mapping(LSP)
    pose = _lsp_person(3).pose
    for c, j in enumerate(mapping):
        name = COCO_KEYPOINTS[c]
        if j < 0 or name == "right_ankle":              # no such joint, or outside the frame
            assert list(kp[c]) == [0, 0, 0], name
        else:
            assert kp[c, 2] == 2 and kp[c, :2] == pytest.approx(pose[j], abs=0.006), name
    assert a["num_keypoints"] == 11 and a["score"] == 0.875 and a["iscrowd"] == 0
    assert a["bbox"] == [170.5, 0.0, 300.0, 480.0] and a["area"] == pytest.approx(300.0 * 480.0)
    assert "keypoint_scores" not in a                   # psi v1: no confidence, none invented
    scores = anns[1]["keypoint_scores"]
    assert len(scores) == 17 and scores[COCO_KEYPOINTS.index("left_ear")] is None
    assert scores[COCO_KEYPOINTS.index("left_hip")] == pytest.approx(conf[LSP.index("l_hip")], abs=5e-4)
    assert not list(tmp_path.glob(".deeppose-tmp-*"))   # no temporary file left

    coco = load(path)
    assert sorted(coco.getImgIds()) == [1, 2, 3] and coco.getAnnIds(imgIds=[2]) == []
    assert len(coco.getAnnIds(imgIds=[3], catIds=coco.getCatIds(catNms=["person"]))) == 2


def test_bad_name_is_refused(tmp_path):
    from deeppose.engine.outputs import RecordingError

    with pytest.raises(RecordingError, match="coco.json"):
        CocoWriter(tmp_path / "x.json", FLIC)


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """``video`` on a 12-frame cut of walking.mp4 (640x360) with --keypoints x.coco.json."""
    if not (WEIGHTS_FLIC / "manifest.json").is_file():
        pytest.skip("weights/flic is not installed")
    folder = tmp_path_factory.mktemp("coco_run")
    clip = write_clip(folder / "walk.mp4", [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
                                           for f in walking_frames(require_data("videos", "walking.mp4"), 12, (1280, 720))])
    out = folder / "walk.coco.json"
    rc = main.main(["video", str(clip), "-o", str(folder / "walk.pose.mp4"), "--keypoints", str(out),
                    "--weights", str(WEIGHTS_FLIC)])
    return rc, out


def test_video_coco_file_loads_in_pycocotools_and_evaluates(coco_run):
    rc, out = coco_run
    assert rc == 0
    coco = load(out)
    images = coco.loadImgs(sorted(coco.getImgIds()))
    assert [im["frame_index"] for im in images] == list(range(12))
    assert all(im["file_name"] == f"walk/{im['frame_index']:06d}.jpg" and (im["width"], im["height"]) == (640, 360)
               for im in images)
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns, "the walker is found"
    for a in anns:
        v = np.array(a["keypoints"]).reshape(17, 3)[:, 2]
        assert set(v) <= {0, 2} and a["num_keypoints"] == int((v == 2).sum())
        assert v[[COCO_KEYPOINTS.index(n) for n in ("left_ear", "right_ear", "left_knee", "right_ankle")]].max() == 0
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 640 + 1e-6 and y + h <= 360 + 1e-6
    # Our poses as detections against themselves: COCO's keypoint AP (OKS) reads 1.
    dets = coco.loadRes([{k: v for k, v in a.items() if k != "id"} for a in anns])
    ev = COCOeval(coco, dets, "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_several_inputs_take_the_coco_format(tmp_path):
    clips = []
    for i in range(2):
        path = tmp_path / f"c{i}.mp4"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
        for k in range(3):
            w.write(np.full((64, 96, 3), 40 * k + 20 * i, np.uint8))
        w.release()
        clips.append(path)
    rc = main.main(["video", *map(str, clips), "--keypoints", "coco", "--model", "flic"])
    assert rc == 0
    for clip in clips:
        coco = load(clip.with_name(f"{clip.stem}.pose.coco.json"))
        assert len(coco.getImgIds()) == 3 and coco.getAnnIds() == []


def test_bad_keypoints_name_is_one_line_exit_2(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    w.write(np.zeros((64, 96, 3), np.uint8))
    w.release()
    rc = main.main(["video", str(clip), "--keypoints", str(tmp_path / "k.json"), "--model", "flic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: keypoints file {tmp_path / 'k.json'} must end in .jsonl, .csv or .coco.json"]
    assert not (tmp_path / "c.pose.mp4").exists()
