"""COCO keypoints files: the poses of a run as a COCO keypoints dataset (``--keypoints FILE.coco.json``).

The file is one JSON document in the layout of COCO's ``person_keypoints_*.json`` (loaded by
``pycocotools.coco.COCO`` and imported by labelling tools such as CVAT or Label Studio), so that
a user can correct our poses and train on them:

- ``images``: one per frame: ``id`` = frame index + 1, ``file_name`` =
  ``<source stem>/<frame index, 6 digits>.jpg`` (the frames of the *input* video, which
  ``ffmpeg -i IN.mp4 -fps_mode passthrough -start_number 0 IN/%06d.jpg`` extracts under those
  names, unless damaged frames of the video were skipped: the index is the record's ``frame``),
  ``width``, ``height``, and our own ``frame_index`` and ``timestamp`` (seconds).
- ``annotations``: one per person and frame: ``keypoints`` (the 17 COCO keypoints as
  x, y, v triples), ``num_keypoints``, ``bbox`` (b0 as COCO's [x, y, w, h], clipped to the
  image), ``area`` (the bbox's), ``iscrowd`` 0, ``category_id`` 1, ``score`` (the person's
  face-detection score, the record's ``score``), ``track_id`` (the person's id, stable across
  frames) and, for models with per-joint confidence (psi v2) only, ``keypoint_scores`` (17
  values, null where the model has no such joint).
- ``categories``: the one ``person`` category with COCO's 17 keypoint names and its skeleton.
- ``info`` names the source and the model's joints, with the mapping below.

Mapping (:data:`JOINT_TO_COCO`): each model joint of the same body point goes to its COCO
keypoint (left and right are person-centric in both): ``nose``, ``l_eye``/``r_eye``,
``l_shoulder``/``r_shoulder``, ``l_elbow``/``r_elbow``, ``l_wrist``/``r_wrist``, ``l_hip``/
``r_hip``, ``l_knee``/``r_knee``, ``l_ankle``/``r_ankle``. COCO's ears are in no model (always
v = 0); LSP's ``neck`` and ``head_top`` are in no COCO keypoint (left out). FLIC gives 11 of the
17 keypoints (no ears, knees, ankles), LSP 12 (no eyes, ears, nose), ``body`` 15.

Visibility: v = 2 for a mapped joint that is finite and in the frame
(:func:`engine.geometry.joints_in_frame`); v = 0, with x = y = 0 (COCO's convention), where the
model has no such joint or predicts it outside the frame. We cannot tell occluded joints
(COCO's v = 1). Coordinates: keypoints are pixels with (0, 0) the centre of the top-left pixel
(the project's convention, COCO's integer pixel indices); ``bbox`` uses COCO's continuous
coordinates, (0, 0) the top-left *corner* of the image, so its x, y are b0's corner + 0.5.

The file is written when the run ends (also after Ctrl-C or an error mid-way), atomically;
until then the frames wait in an anonymous temporary file beside it (memory stays bounded).
A killed process leaves no new file.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .geometry import joints_in_frame
from .outputs import TEMP_PREFIX, RecordingError, replaced_atomically

COCO_SUFFIX = ".coco.json"
"""How a COCO keypoints file's name ends (``--keypoints FILE.coco.json``)."""

COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
"""COCO's 17 person keypoints, in COCO's order."""

COCO_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
                 (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
"""COCO's person skeleton: pairs of 1-based indices into :data:`COCO_KEYPOINTS`."""

JOINT_TO_COCO = {"nose": "nose", "l_eye": "left_eye", "r_eye": "right_eye",
                 **{f"{s}_{j}": f"{side}_{j}" for s, side in (("l", "left"), ("r", "right"))
                    for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}}
"""Our joint names (engine.skeletons) -> COCO keypoint names; joints not here (LSP's ``neck``,
``head_top``) have no COCO keypoint."""


def is_coco_path(path: str | Path) -> bool:
    """Whether ``path``'s name ends in ``.coco.json`` (any case)."""
    return Path(path).name.lower().endswith(COCO_SUFFIX)


def coco_mapping(skeleton) -> np.ndarray:
    """(17,) int: for each COCO keypoint, the index of the model joint mapped to it, -1 for none."""
    coco_to_joint = {c: j for j, c in JOINT_TO_COCO.items()}
    return np.array([skeleton.joints.index(coco_to_joint[c]) if coco_to_joint.get(c) in skeleton.joints else -1
                     for c in COCO_KEYPOINTS], dtype=np.int64)


def _f(v: float, nd: int = 2) -> float | None:
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None


def coco_bbox(b0, width: int, height: int) -> list[float]:
    """A b0 box (cx, cy, w, h; pixel centres at integers) as COCO's [x, y, w, h] (pixel corners
    at integers: the top-left corner is (0, 0)), clipped to the image's [0, W] x [0, H]."""
    cx, cy, w, h = (float(v) for v in b0)
    x0, y0 = cx - w / 2 + 0.5, cy - h / 2 + 0.5
    x1, y1 = x0 + w, y0 + h
    if width and height:
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    return [round(x0, 2), round(y0, 2), round(max(x1 - x0, 0.0), 2), round(max(y1 - y0, 0.0), 2)]


def coco_annotation(person, skeleton, frame_size: tuple[int, int], mapping: np.ndarray | None = None) -> dict:
    """One person of a :class:`engine.pipeline.FrameResult` as a COCO annotation, without
    ``id`` and ``image_id`` (see the module docstring for every field)."""
    mapping = coco_mapping(skeleton) if mapping is None else mapping
    w, h = frame_size
    pose = np.asarray(person.pose, dtype=np.float64)
    inside = joints_in_frame(pose, w, h) if w and h else np.isfinite(pose).all(axis=-1)
    conf = getattr(person, "confidence", None)
    conf = None if conf is None else np.asarray(conf, dtype=np.float64)
    keypoints: list = []
    scores: list = []
    for j in mapping:
        if j >= 0 and inside[j]:
            keypoints += [round(float(pose[j, 0]), 2), round(float(pose[j, 1]), 2), 2]
        else:
            keypoints += [0, 0, 0]
        scores.append(None if j < 0 or conf is None else _f(conf[j], 3))
    bbox = coco_bbox(person.b0, w, h)
    ann = {"category_id": 1, "keypoints": keypoints, "num_keypoints": int(sum(v > 0 for v in keypoints[2::3])),
           "bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0, "score": _f(person.score, 3),
           "track_id": int(person.track_id)}
    if any(s is not None for s in scores):
        ann["keypoint_scores"] = scores
    return ann


def coco_category() -> dict:
    """COCO's ``person`` category with its 17 keypoints and skeleton."""
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
            "skeleton": [list(p) for p in COCO_SKELETON]}


class CocoWriter:
    """Writes the frames of a run as a COCO keypoints file (see the module docstring), with the
    interface of :class:`engine.keypoints.KeypointsWriter` (``serialize``, ``write_serialized``,
    ``write``, ``frames_written``, ``close``), so that :class:`engine.recording.PoseRecorder`
    writes either.

    Args:
        path: the output file, ``NAME.coco.json``.
        skeleton: the model's skeleton.
        header: the run's facts (as the JSON Lines header: ``video``, ``source``, ``fps``,
            ``width``, ``height``); ``source`` (the input video's name) names the image files.
    Raises:
        RecordingError: the name does not end in .coco.json, or the temporary file beside it
            cannot be created.
    """

    def __init__(self, path: str | Path, skeleton, header: dict | None = None):
        self.path = Path(path)
        if not is_coco_path(self.path):
            raise RecordingError(f"COCO keypoints file {path} must end in {COCO_SUFFIX}")
        self.format = "coco"
        self.skeleton = skeleton
        self.header = dict(header or {})
        self.frames_written = 0
        self.annotations_written = 0
        self._mapping = coco_mapping(skeleton)
        source = self.header.get("source") or self.header.get("video")
        self._folder = Path(str(source)).stem if source else ""
        folder = self.path.parent if str(self.path.parent) else Path(".")
        try:   # anonymous (removed when closed), beside the output: the same disk the file goes to
            self._images = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder, prefix=TEMP_PREFIX)
            self._annotations = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder, prefix=TEMP_PREFIX)
        except OSError as e:
            raise RecordingError(f"cannot write COCO keypoints file {self.path}: {e.strerror or e}") from None
        self._closed = False

    def serialize(self, result) -> tuple[dict, list[dict]]:
        """(image, annotations without ids) of one :class:`engine.pipeline.FrameResult`."""
        w, h = result.frame_size
        w, h = int(w or self.header.get("width") or 0), int(h or self.header.get("height") or 0)
        index = int(result.index)
        name = f"{index:06d}.jpg"
        image = {"id": index + 1, "file_name": f"{self._folder}/{name}" if self._folder else name, "width": w,
                 "height": h, "frame_index": index, "timestamp": round(float(result.timestamp), 4)}
        return image, [coco_annotation(p, self.skeleton, (w, h), self._mapping) for p in result.persons]

    def write_serialized(self, item: tuple[dict, list[dict]]) -> None:
        """Keep one frame from :meth:`serialize` for the file (written by :meth:`close`)."""
        image, annotations = item
        self._images.write(("," if self.frames_written else "") + json.dumps(image, separators=(",", ":")))
        for ann in annotations:
            self.annotations_written += 1
            ann = {"id": self.annotations_written, "image_id": image["id"], **ann}
            self._annotations.write(("," if self.annotations_written > 1 else "")
                                    + json.dumps(ann, separators=(",", ":")))
        self.frames_written += 1

    def write(self, result) -> None:
        """Keep one :class:`engine.pipeline.FrameResult` for the file."""
        self.write_serialized(self.serialize(result))

    def _info(self) -> dict:
        joints = list(self.skeleton.joints)
        return {"description": f"deeppose keypoints of {self.header.get('source') or self.header.get('video') or 'a run'}",
                "contributor": "deeppose", "version": "1.0",
                "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "deeppose": {**{k: v for k, v in self.header.items() if k in ("video", "source", "fps", "width", "height")},
                             "skeleton": getattr(self.skeleton, "name", None), "joints": joints,
                             "coco_from_joint": {c: (joints[j] if j >= 0 else None)
                                                 for c, j in zip(COCO_KEYPOINTS, self._mapping)}}}

    def close(self) -> None:
        """Write the file (atomically: a temporary file beside it, then renamed) and release the
        temporary files; idempotent.

        Raises:
            RecordingError: the file cannot be written (the disk full, the folder gone).
        """
        if self._closed:
            return
        self._closed = True
        try:
            with replaced_atomically(self.path, suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as f:
                head = {"info": self._info(), "licenses": []}
                f.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"images":[')
                self._images.seek(0)
                shutil.copyfileobj(self._images, f)
                f.write('],"annotations":[')
                self._annotations.seek(0)
                shutil.copyfileobj(self._annotations, f)
                f.write('],"categories":' + json.dumps([coco_category()], separators=(",", ":")) + "}\n")
        except OSError as e:
            raise RecordingError(f"cannot write COCO keypoints file {self.path}: {e.strerror or e}") from None
        finally:
            self._images.close()
            self._annotations.close()
