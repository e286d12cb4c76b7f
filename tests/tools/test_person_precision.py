"""tools/eval/person_precision.py: the hand counts of walking.mp4, also mirrored left to right."""
from __future__ import annotations

import json

from deeppose.tools.eval.person_precision import DEFAULT_TRUTH, mirrored, score


def record(frame: int, heads: list) -> dict:
    """A keypoints-JSONL frame record with one full-body skeleton per head point (its neck and head top there)."""
    persons = [{"id": i + 1, "joints": {"neck": {"x": x, "y": y}, "head_top": {"x": x, "y": y}}}
               for i, (x, y) in enumerate(heads)]
    return {"frame": frame, "persons": persons}


def test_mirrored_hand_counts_put_every_head_at_width_minus_one_minus_x():
    truth = json.loads(DEFAULT_TRUTH.read_text())
    flipped = mirrored(truth)
    assert truth["size"][0] == 1280 and mirrored(flipped) == truth
    first, again = truth["annotations"][0]["persons"][0], flipped["annotations"][0]["persons"][0]
    assert again["head"] == [1279 - first["head"][0]] + first["head"][1:]
    assert truth["annotations"][0]["persons"][0] == first   # the original is left as it was


def test_a_skeleton_on_the_mirrored_walker_counts_only_against_the_mirrored_counts():
    truth = json.loads(DEFAULT_TRUTH.read_text())
    records = []
    for a in truth["annotations"]:
        walker = next(p for p in a["persons"] if p.get("walker"))
        records.append(record(a["frame"], [(1279 - walker["head"][0], walker["head"][1])]))
    right, wrong = score(records, mirrored(truth)), score(records, truth)
    assert right["precision"] == 1.0 and right["walker_ids"] == [1]
    assert wrong["precision"] < 0.5
