"""The keypoints file of a run: one record per frame, JSON Lines or CSV, flushed after every frame.

JSON Lines: a header record first (``{"deeppose_keypoints": 1, "video": NAME | null, "source", "fps",
"width", "height", "size_note", "skeleton", "joints": [...], "angles": [...], "frames_note": ...}``),
then one record per frame::

    {"frame": 12, "timestamp": 0.4, "persons": [
        {"id": 1, "b0": [cx, cy, w, h], "b0_source": "face", "face": [cx, cy, w, h] | null,
         "score": 0.93, "stage": 3, "smoothed": true,
         "joints": {"l_shoulder": {"x": 812.4, "y": 203.1, "in_frame": true, "confidence": null}, ...},
         "angles": {"l_elbow": {"deg": 92.4, "confidence": null}, ...}}]}

``persons`` is ``[]`` when nobody is in the frame. ``joints`` holds the model's joints, in its
order and under its names (the header's ``joints``: FLIC's 11 upper-body joints, LSP's 14
full-body ones). ``in_frame`` is false for a joint predicted outside the frame (a full-body b0
reaches beyond the frame when the legs leave it, :func:`engine.geometry.joints_in_frame`); such
joints are not drawn. ``confidence`` is the joint's confidence in [0, 1] (psi v2 models: the
probability that it lies within PDJ@0.2, :attr:`engine.cascade.CascadeResult.confidence`), null
for models without it (psi v1, the shipped models). ``angles`` holds the joint angles the
skeleton has (the header's ``angles``; definitions in :mod:`engine.angles`): degrees in
[0, 180], null when a joint of the angle is out of the frame, and each angle's confidence (the
least of its joints', null without). CSV: one row per person per frame with columns
:func:`csv_columns` (the flag as ``<joint>_in_frame``, 1 or 0; the angles as ``angle_<name>``
and ``angle_<name>_confidence``; unknown values empty); a frame with nobody is one row whose
``person`` column is empty.
``frame`` numbers the frames recorded, from 0 (a video's damaged, unreadable frames are skipped,
so after them it runs behind the source's frame numbers); ``timestamp`` is the frame's source
time in seconds (a video's presentation time, so variable frame rates and skipped frames show).
Coordinates are pixels of the frame as displayed, ``width`` x ``height`` in the header (square
pixels: a video with non-square pixels is resampled to its display geometry before estimation;
x right, y down, (0, 0) the centre of the top-left pixel); ``stage`` is the cascade stage the
joints come from; ``smoothed`` says whether the One-Euro filter was applied; ``b0_source`` is
"face" (a face detected in this frame), "pose" (tracked by pose: from the eyes and nose of the
previous frame, or with tracking by body the box around it), "held", "body" (found without a
face, tracking by body) or "frame", and ``face`` the face box b0 came from (detected, or
implied by the previous pose); ``score`` is the presence score with tracking by body (psi v2
models), else the face detection score.

Written alongside the annotated video by :class:`engine.recording.PoseRecorder`.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .angles import angle_confidence, angle_defs, joint_angles
from .geometry import joints_in_frame
from .outputs import RecordingError

KEYPOINT_FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
KEYPOINTS_FORMAT_VERSION = 1


def keypoints_format(path: str | Path) -> str:
    """"jsonl", "csv" or "coco" (a name ending in .coco.json, :mod:`engine.coco`) from a
    keypoints file name; raises :class:`RecordingError` otherwise."""
    if Path(path).name.lower().endswith(".coco.json"):
        return "coco"
    fmt = KEYPOINT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise RecordingError(f"keypoints file {path} must end in .jsonl, .csv or .coco.json")
    return fmt


def open_keypoints_writer(path: str | Path, skeleton, header: dict | None = None):
    """The writer of the keypoints file ``path``: a :class:`KeypointsWriter` (.jsonl, .csv) or
    an :class:`engine.coco.CocoWriter` (.coco.json); both take ``serialize`` / ``write_serialized``
    / ``write`` / ``close``. Raises :class:`RecordingError` (bad suffix, cannot create)."""
    if keypoints_format(path) == "coco":
        from .coco import CocoWriter

        return CocoWriter(path, skeleton, header)
    return KeypointsWriter(path, skeleton, header)


def _r(v: float, nd: int = 2):
    v = float(v)
    return round(v, nd) if math.isfinite(v) else None


def _box(b) -> list | None:
    return None if b is None else [_r(v) for v in np.asarray(b, dtype=np.float64)]


def _in_frame(result, pose: np.ndarray) -> np.ndarray:
    """(k,) bool: the joints of ``pose`` on the result's frame (finite ones when its size is unknown)."""
    w, h = result.frame_size
    return joints_in_frame(pose, w, h) if w and h else np.isfinite(pose).all(axis=-1)


def header_record(skeleton, fields: dict | None = None) -> dict:
    """The JSON Lines header record: ``{"deeppose_keypoints": 1, "video": null, **fields,
    "skeleton", "joints", "angles"}`` (the model's joint names and the angles it has, see the
    module docstring). Also the first message of the live stream (:mod:`engine.streaming`)."""
    return {"deeppose_keypoints": KEYPOINTS_FORMAT_VERSION, "video": None, **(fields or {}),
            "skeleton": getattr(skeleton, "name", None), "joints": list(skeleton.joints),
            "angles": [d.name for d in angle_defs(skeleton)]}


def _confidence(p, k: int) -> np.ndarray:
    """(k,) the person's joint confidences, NaN where unknown (no ``confidence`` attribute)."""
    c = getattr(p, "confidence", None)
    return np.full(k, np.nan) if c is None else np.asarray(c, dtype=np.float64).reshape(k)


def person_angles(pose: np.ndarray, inside: np.ndarray, confidence: np.ndarray, skeleton) -> tuple[np.ndarray, np.ndarray]:
    """((m,) degrees, (m,) confidences) of the angles of :func:`engine.angles.angle_defs` of one
    (k, 2) pose; an angle with a joint outside the frame (``inside`` false) is NaN."""
    return joint_angles(pose, skeleton, inside), angle_confidence(confidence, skeleton)


def frame_record(result, skeleton) -> dict:
    """The JSON Lines record of one :class:`engine.pipeline.FrameResult` (see module docstring)."""
    persons = []
    names = [d.name for d in angle_defs(skeleton)]
    for p in result.persons:
        pose = np.asarray(p.pose, dtype=np.float64)
        inside = _in_frame(result, pose)
        conf = _confidence(p, len(pose))
        deg, aconf = person_angles(pose, inside, conf, skeleton)
        persons.append({
            "id": int(p.track_id),
            "b0": _box(p.b0),
            "b0_source": p.b0_source,
            "face": _box(p.face),
            "score": _r(p.score, 3),
            "stage": int(p.stage_poses.shape[0]),
            "smoothed": bool(p.smoothed),
            "joints": {name: {"x": _r(pose[j, 0]), "y": _r(pose[j, 1]), "in_frame": bool(inside[j]),
                              "confidence": _r(conf[j], 3)}
                       for j, name in enumerate(skeleton.joints)},
            "angles": {name: {"deg": _r(deg[a], 1), "confidence": _r(aconf[a], 3)} for a, name in enumerate(names)},
        })
    return {"frame": int(result.index), "timestamp": round(float(result.timestamp), 4), "persons": persons}


def csv_columns(skeleton) -> list[str]:
    """CSV header: frame, timestamp, person, b0_source, stage, smoothed, score, b0_cx, b0_cy,
    b0_w, b0_h, face_cx, face_cy, face_w, face_h, then <joint>_x, <joint>_y, <joint>_in_frame,
    <joint>_confidence per joint, then angle_<name>, angle_<name>_confidence per angle
    (:func:`engine.angles.angle_defs`)."""
    cols = ["frame", "timestamp", "person", "b0_source", "stage", "smoothed", "score",
            "b0_cx", "b0_cy", "b0_w", "b0_h", "face_cx", "face_cy", "face_w", "face_h"]
    for name in skeleton.joints:
        cols += [f"{name}_x", f"{name}_y", f"{name}_in_frame", f"{name}_confidence"]
    for d in angle_defs(skeleton):
        cols += [f"angle_{d.name}", f"angle_{d.name}_confidence"]
    return cols


def _cell(v):
    """A CSV cell: "" for None."""
    return "" if v is None else v


def csv_rows(result, skeleton) -> list[list]:
    """CSV rows of one frame: one per person, or one row with an empty ``person`` if none."""
    base = [int(result.index), round(float(result.timestamp), 4)]
    n_rest = len(csv_columns(skeleton)) - 2
    if not result.persons:
        return [base + [""] * n_rest]
    rows = []
    for p in result.persons:
        face = _box(p.face) or [""] * 4
        pose = np.asarray(p.pose, dtype=np.float64)
        inside = _in_frame(result, pose)
        conf = _confidence(p, len(pose))
        deg, aconf = person_angles(pose, inside, conf, skeleton)
        joints = [v for j in range(len(pose)) for v in (_cell(_r(pose[j, 0])), _cell(_r(pose[j, 1])), int(inside[j]),
                                                        _cell(_r(conf[j], 3)))]
        angles = [v for a in range(len(deg)) for v in (_cell(_r(deg[a], 1)), _cell(_r(aconf[a], 3)))]
        rows.append(base + [int(p.track_id), p.b0_source, int(p.stage_poses.shape[0]), int(bool(p.smoothed)),
                            _r(p.score, 3), *_box(p.b0), *face, *joints, *angles])
    return rows


class KeypointsWriter:
    """Writes one record per frame to a JSON Lines or CSV file, flushed after every frame.

    Args:
        path: output file; the format comes from its suffix (.jsonl or .csv).
        skeleton: the model's skeleton (joint names).
        header: JSON Lines only: extra fields of the header record (first line), e.g. the
            video's name, frame rate and size.
    Raises:
        RecordingError: bad suffix or the file cannot be created.
    """

    def __init__(self, path: str | Path, skeleton, header: dict | None = None):
        self.path = Path(path)
        self.format = keypoints_format(self.path)
        if self.format == "coco":
            raise RecordingError(f"{path} is a COCO file: write it with engine.coco.CocoWriter "
                                 "(open_keypoints_writer picks the writer)")
        self.skeleton = skeleton
        self.frames_written = 0
        try:
            self._f = open(self.path, "w", newline="" if self.format == "csv" else None, encoding="utf-8")
        except OSError as e:
            raise RecordingError(f"cannot create keypoints file {self.path}: {e.strerror or e}") from None
        self._csv = None
        if self.format == "csv":
            self._csv = csv.writer(self._f)
            self._csv.writerow(csv_columns(skeleton))
        else:
            self._f.write(json.dumps(header_record(skeleton, header), separators=(",", ":")) + "\n")
        self._f.flush()

    def serialize(self, result) -> str:
        """The text of one :class:`engine.pipeline.FrameResult` (a JSON line, or CSV rows)."""
        if self._csv is None:
            return json.dumps(frame_record(result, self.skeleton), separators=(",", ":")) + "\n"
        buf = io.StringIO()
        csv.writer(buf).writerows(csv_rows(result, self.skeleton))
        return buf.getvalue()

    def write(self, result) -> None:
        """Append the records of one :class:`engine.pipeline.FrameResult` and flush."""
        self.write_serialized(self.serialize(result))

    def write_serialized(self, text: str) -> None:
        """Append one frame's text from :meth:`serialize` and flush."""
        self._f.write(text)
        self._f.flush()
        self.frames_written += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._f.closed:
            self._f.close()


def read_keypoints(path: str | Path) -> list[dict]:
    """Read a keypoints file back: one dict per frame, as the JSON Lines records.

    CSV files are regrouped by frame (``persons`` empty for a frame written with no person);
    numbers come back as floats, missing values as None. The JSON Lines header record is
    left out (see :func:`read_keypoints_header`). COCO files are not read here (ValueError):
    ``pycocotools.coco.COCO`` reads them.
    """
    path = Path(path)
    if keypoints_format(path) == "coco":
        raise ValueError(f"{path} is a COCO keypoints file: read it with pycocotools")
    if keypoints_format(path) == "jsonl":
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        return [r for r in records if "frame" in r]
    frames: dict[int, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fieldnames = reader.fieldnames or []
        joints = [c[:-2] for c in fieldnames if c.endswith("_x") and c not in ("b0_x",)
                  and not c.startswith(("b0_", "face_"))]
        angles = [c[len("angle_"):] for c in fieldnames if c.startswith("angle_") and not c.endswith("_confidence")]

        def num(v):
            return None if v in ("", None) else float(v)

        for row in reader:
            rec = frames.setdefault(int(row["frame"]), {"frame": int(row["frame"]),
                                                         "timestamp": float(row["timestamp"]), "persons": []})
            if row["person"] == "":
                continue
            face = [num(row[f"face_{c}"]) for c in ("cx", "cy", "w", "h")]
            rec["persons"].append({
                "id": int(row["person"]),
                "b0": [num(row[f"b0_{c}"]) for c in ("cx", "cy", "w", "h")],
                "b0_source": row["b0_source"],
                "face": None if face[0] is None else face,
                "score": num(row["score"]),
                "stage": int(row["stage"]),
                "smoothed": row["smoothed"] == "1",
                "joints": {j: {"x": num(row[f"{j}_x"]), "y": num(row[f"{j}_y"]),
                               **({"in_frame": row[f"{j}_in_frame"] == "1"} if f"{j}_in_frame" in row else {}),
                               **({"confidence": num(row[f"{j}_confidence"])} if f"{j}_confidence" in row else {})}
                           for j in joints},
                **({"angles": {a: {"deg": num(row[f"angle_{a}"]), "confidence": num(row[f"angle_{a}_confidence"])}
                               for a in angles}} if angles else {}),
            })
    return [frames[k] for k in sorted(frames)]


def read_keypoints_header(path: str | Path) -> dict | None:
    """The header record (first line) of a JSON Lines keypoints file; None for CSV or none."""
    path = Path(path)
    if keypoints_format(path) != "jsonl":
        return None
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    record = json.loads(first) if first.strip() else None
    return record if isinstance(record, dict) and "deeppose_keypoints" in record else None
