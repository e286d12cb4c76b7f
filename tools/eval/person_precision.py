"""Precision and recall of the persons the video command draws, against hand-counted persons.

    python -m deeppose.tools.eval.person_precision KEYPOINTS.jsonl [--truth tests/data/walking_persons.json] [--mirror]

The truth file (``tests/data/walking_persons.json`` for walking.mp4) lists, for every 12th
frame, each person whose head is in view with an approximate head box, whether some of the
face is visible, whether the face is hard to see (mostly hidden or turned away), and which
one is the walker. A drawn skeleton *lies on* a person when the midpoint of its eyes and nose
(of its neck and head top for the full-body model, which has no face joints) falls inside
that person's head box grown to twice its size; skeletons and persons are paired
one to one (nearest first), so a second skeleton on one person is a false one.

- precision: drawn skeletons that lie on a real person / drawn skeletons, over the annotated
  frames, and over every frame with the head boxes interpolated between the annotated frames
  (a person in only one of the two neighbouring annotated frames keeps that box);
- recall: countable persons (face visible, not hard) with a skeleton on them / countable persons;
- walker: over every frame, the ids of the skeletons on the walker (his head box interpolated
  between the annotated frames) and the frames he is drawn in.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deeppose.engine.constants import PACKAGE_ROOT
from deeppose.engine.detection.persons import FACE_JOINTS
from deeppose.tools.data.person_boxes import HEAD_JOINTS as NECK_HEAD_TOP

DEFAULT_TRUTH = PACKAGE_ROOT / "tests" / "data" / "walking_persons.json"
HEAD_JOINTS = (FACE_JOINTS, NECK_HEAD_TOP)
"""The joints whose midpoint is a skeleton's head: the upper-body model's face, else the
full-body model's neck and head top (the middle of the head)."""
GROW = 2.0
"""A head box is grown to this many times its size before testing whether a skeleton's head lies in it."""


def head_points(persons: list[dict]) -> np.ndarray:
    """(P, 2) head points of keypoints-JSONL persons (:data:`HEAD_JOINTS`), pixels (NaN if missing)."""
    out = np.full((len(persons), 2), np.nan)
    for i, p in enumerate(persons):
        joints = p.get("joints", {})
        for names in HEAD_JOINTS:
            pts = [(joints[n]["x"], joints[n]["y"]) for n in names if n in joints]
            if pts:
                out[i] = np.mean(np.asarray(pts, dtype=np.float64), axis=0)
                break
    return out


def match(points: np.ndarray, heads: np.ndarray, grow: float = GROW) -> dict[int, int]:
    """Pair skeleton heads (P, 2) with head boxes (H, 4) one to one, nearest (in head sizes)
    first, a pair only when the point lies in the box grown ``grow`` times; {point: head}."""
    pairs = []
    for i, pt in enumerate(points):
        for j, h in enumerate(heads):
            dx, dy = abs(pt[0] - h[0]) / h[2], abs(pt[1] - h[1]) / h[3]
            if dx <= grow / 2 and dy <= grow / 2:
                pairs.append((max(dx, dy), i, j))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def heads_at(truth: dict, frame: int) -> dict[str, np.ndarray]:
    """Every annotated person's head box (4,) at any frame: linearly interpolated between the
    two annotated frames around it (the box of the one it is in, if only one), extrapolated
    from the last two past the end; {name: box}."""
    ann = sorted(truth["annotations"], key=lambda a: a["frame"])
    frames = np.array([a["frame"] for a in ann], dtype=np.float64)
    j = int(np.clip(np.searchsorted(frames, frame, side="right") - 1, 0, len(frames) - 2))
    t = (frame - frames[j]) / (frames[j + 1] - frames[j])
    a = {p["name"]: np.asarray(p["head"], dtype=np.float64) for p in ann[j]["persons"]}
    b = {p["name"]: np.asarray(p["head"], dtype=np.float64) for p in ann[j + 1]["persons"]}
    out = {}
    for name in a.keys() | b.keys():
        if name in a and name in b:
            out[name] = a[name] + t * (b[name] - a[name])
        else:
            out[name] = a[name] if name in a else b[name]
    return out


def walker_box(truth: dict, frame: int) -> np.ndarray:
    """The walker's head box at any frame (see :func:`heads_at`)."""
    name = next(p["name"] for a in truth["annotations"] for p in a["persons"] if p.get("walker"))
    return heads_at(truth, frame)[name]


def mirrored(truth: dict) -> dict:
    """The hand counts of the video mirrored left to right (``cv2.flip(frame, 1)``): a copy of
    ``truth`` whose head boxes' centres x go to width - 1 - x (pixel centres on integers; width
    from ``truth["size"]``). The same persons in a second crowd clip: which small background
    people a tracker keeps hangs on single frames, so one clip alone is a coin toss.

    Raises:
        KeyError: ``truth`` has no "size".
    """
    width = truth["size"][0]
    out = json.loads(json.dumps(truth))
    for a in out["annotations"]:
        for p in a["persons"]:
            p["head"][0] = width - 1 - p["head"][0]
    return out


def score(records: list[dict], truth: dict) -> dict:
    """Precision, recall and walker id figures of keypoints-JSONL records against ``truth``.

    Returns:
        dict with drawn, correct, precision (annotated frames), drawn_all, correct_all,
        precision_all, false_all (every frame, interpolated heads), countable, found, recall,
        false (list of (frame, id, head point) of the drawn skeletons on nobody),
        walker_ids (sorted list), walker_frames (frames the walker is drawn in), frames.
    """
    by_frame = {r["frame"]: r for r in records}
    drawn = correct = countable = found = 0
    false: list = []
    for a in truth["annotations"]:
        rec = by_frame.get(a["frame"])
        persons = rec["persons"] if rec else []
        heads = np.array([p["head"] for p in a["persons"]], dtype=np.float64).reshape(-1, 4)
        pts = head_points(persons)
        m = match(pts, heads)
        drawn += len(persons)
        correct += len(m)
        false += [(a["frame"], persons[i]["id"], [None if np.isnan(v) else round(float(v)) for v in pts[i]])
                  for i in range(len(persons)) if i not in m]
        hit = set(m.values())
        for j, p in enumerate(a["persons"]):
            if p["face_visible"] and not p.get("hard"):
                countable += 1
                found += j in hit
    ids: list[int] = []
    walker_frames = drawn_all = correct_all = 0
    false_all: list = []
    walker = next(p["name"] for a in truth["annotations"] for p in a["persons"] if p.get("walker"))
    for r in records:
        pts = head_points(r["persons"])
        heads = heads_at(truth, r["frame"])
        names = sorted(heads)
        m = match(pts, np.stack([heads[n] for n in names]))
        drawn_all += len(pts)
        correct_all += len(m)
        false_all += [(r["frame"], r["persons"][i]["id"]) for i in range(len(pts)) if i not in m]
        for i, j in m.items():
            if names[j] == walker:
                ids.append(r["persons"][i]["id"])
                walker_frames += 1
    return {"frames": len(records), "drawn": drawn, "correct": correct, "precision": correct / max(drawn, 1),
            "drawn_all": drawn_all, "correct_all": correct_all, "precision_all": correct_all / max(drawn_all, 1),
            "false_all": false_all,
            "countable": countable, "found": found, "recall": found / max(countable, 1), "false": false,
            "walker_ids": sorted(set(ids)), "walker_frames": walker_frames}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keypoints", help="keypoints JSONL written by main.py video --keypoints")
    ap.add_argument("--truth", default=str(DEFAULT_TRUTH), help="hand counts (default: %(default)s)")
    ap.add_argument("--mirror", action="store_true",
                    help="the keypoints are of the video mirrored left to right (score against mirrored hand counts)")
    args = ap.parse_args(argv)
    from deeppose.engine.keypoints import read_keypoints

    records = read_keypoints(args.keypoints)   # the frame records (the header record is skipped)
    truth = json.loads(Path(args.truth).read_text())
    s = score(records, mirrored(truth) if args.mirror else truth)
    print(f"{args.keypoints}: precision {s['precision']:.3f} ({s['correct']}/{s['drawn']} drawn skeletons on a person; "
          f"every frame {s['precision_all']:.3f}, {s['correct_all']}/{s['drawn_all']}), "
          f"recall {s['recall']:.3f} ({s['found']}/{s['countable']} visible faces); walker drawn in "
          f"{s['walker_frames']}/{s['frames']} frames with ids {s['walker_ids']}")
    if s["false"]:
        print("  on nobody (frame, id, head):", s["false"])
    if s["false_all"]:
        print("  on nobody, every frame (frame, id):", s["false_all"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
