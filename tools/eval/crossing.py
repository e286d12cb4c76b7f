"""Two people crossing: test material for one id per person (issue "Every visible person", item 3).

    python -m deeppose.tools.eval.crossing [--model DIR ...] [--write CLIP.mp4]

The clip is made from walking.mp4 (:func:`crossing_clip`): the walker's strip of each frame (his
head's x from the hand counts, tests/data/walking_persons.json) walks from the left edge of a
blurred backdrop to the right, and the same strip 40 frames later, mirrored, from the right to
the left in front of him; halfway they cross and the front one hides most of the other for a
few frames. Where each person is in every frame is known, so each figure is given to the
person whose strip centre is nearest its torso (not in the frames where the strips' centres are
less than half a strip apart: who is who is not scored there), and for each person the tool
prints the frames with a figure, the ids his figures had and how often his id changed from one
drawn frame to the next (:func:`score_ids`).

It then scores one walker alone who walks behind a grey pillar in the middle of the frame
(:func:`crossing_clip` with ``second=False, pillar=240``): hidden for about 20 frames, he should
come out with the id he went in with.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

STRIP = 300
"""Width of the walker's strip in walking.mp4 pixels (centred on his head)."""
LATER = 40
"""The second person is the walker this many frames later, mirrored."""
PILLAR = 240
"""Width of the pillar of the walker-alone clip, pixels of the 960x540 frame."""


def crossing_clip(n: int = 96, size: tuple[int, int] = (960, 540), second: bool = True,
                  pillar: int = 0) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The crossing clip (see the module docstring).

    Args:
        n: frames (at most 144 - :data:`LATER`, walking.mp4's length).
        size: (width, height) of the frames, pixels.
        second: the second person walks left in front of the first (False: the first alone).
        pillar: width in pixels of a grey pillar in the middle of the frame, in front of
            everyone (0: none).
    Returns:
        (n frames (H, W, 3) uint8 BGR, (n, 2) the x of each person's strip centre, pixels: the
        one walking right, then the one walking left in front of him (without ``second``, -1e9:
        nowhere); the strips' width, pixels).
    Raises:
        ValueError: ``n`` is out of range, or walking.mp4 cannot be read.
    """
    import cv2

    from deeppose.engine.constants import PACKAGE_ROOT
    from deeppose.tools.data.datasets import read_frames, walking_video

    if not 2 <= n <= 144 - LATER:
        raise ValueError(f"a crossing clip has 2 to {144 - LATER} frames, got {n}")
    frames = read_frames(walking_video(), n + LATER)
    if len(frames) < n + LATER:
        raise ValueError(f"could not read {n + LATER} frames of {walking_video()}")
    truth = json.loads((PACKAGE_ROOT / "tests" / "data" / "walking_persons.json").read_text())
    heads = sorted((a["frame"], p["head"][0]) for a in truth["annotations"] for p in a["persons"]
                   if p["name"] == "walker")
    w, h = size
    side = int(round(STRIP * h / frames[0].shape[0]))

    def strip(i: int, mirror: bool) -> np.ndarray:
        cx = int(round(np.interp(i, *zip(*heads))))
        x0 = min(max(cx - STRIP // 2, 0), frames[i].shape[1] - STRIP)
        s = cv2.resize(frames[i][:, x0:x0 + STRIP], (side, h), interpolation=cv2.INTER_AREA)
        return s[:, ::-1] if mirror else s

    backdrop = cv2.resize(cv2.GaussianBlur(frames[0], (0, 0), 25), size, interpolation=cv2.INTER_AREA)
    out, centres = [], np.full((n, 2), -1e9)
    people = ((0, 0, w - side, False), (LATER, w - side, 0, True))[:2 if second else 1]
    for t in range(n):
        img = backdrop.copy()
        for who, (later, start, end, mirror) in enumerate(people):
            x = int(round(start + (end - start) * t / (n - 1)))
            img[:, x:x + side] = strip(t + later, mirror)
            centres[t, who] = x + side / 2
        if pillar:
            img[:, (w - pillar) // 2:(w + pillar) // 2] = 90
        out.append(img)
    return out, centres, side


def assign(torsos: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The person (column of ``centres``) nearest each figure's torso x: (F,) int, -1 for a figure
    without a torso. ``torsos``: (F,) x in pixels (NaN where none); ``centres``: (2,)."""
    out = np.full(len(torsos), -1)
    ok = np.isfinite(torsos)
    out[ok] = np.abs(torsos[ok, None] - centres[None]).argmin(1)
    return out


def score_ids(figures: list[list[tuple[int, float]]], centres: np.ndarray, strip: float) -> dict:
    """Ids per person on the crossing clip.

    Args:
        figures: per frame, the (track id, torso x in pixels) of every figure drawn.
        centres: (n, 2) the x of each person's strip centre per frame, pixels.
        strip: the strips' width, pixels.
    Returns:
        {"frames": [per person, frames where a figure is his], "ids": [per person, the sorted
        distinct ids of his figures], "changes": [per person, how often his id changed from one
        of his frames to the next], "extra": figures beyond the first on one person}; frames
        where the strips' centres are less than ``strip / 2`` apart are left out.
    """
    seq: list[list[int]] = [[], []]
    extra = 0
    for f, c in zip(figures, centres):
        if abs(c[0] - c[1]) < strip / 2:
            continue
        owner = assign(np.array([x for _, x in f], dtype=np.float64), c)
        for who in (0, 1):
            mine = [tid for (tid, _), o in zip(f, owner) if o == who]
            extra += max(len(mine) - 1, 0)
            if mine:
                seq[who].append(mine[0])
    return {"frames": [len(s) for s in seq], "ids": [sorted(set(s)) for s in seq],
            "changes": [int(np.sum(np.diff(s) != 0)) for s in seq], "extra": extra}


def run_clip(pipe, frames: list[np.ndarray]) -> list[list[tuple[int, float]]]:
    """Run ``pipe`` (a :class:`engine.pipeline.PosePipeline`) over ``frames`` at 30 fps as the video
    command does (:func:`engine.frames.process_clip`); per frame, the (track id, torso x in pixels:
    the mean x of the shoulders and hips) of every figure."""
    from deeppose.engine.frames import process_clip

    torso = [pipe.skeleton.joints.index(j) for j in ("l_shoulder", "r_shoulder", "l_hip", "r_hip")
             if j in pipe.skeleton.joints]
    return [[(p.track_id, float(np.nanmean(p.pose[torso, 0]))) for p in r.persons] for r in process_clip(pipe, frames)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeppose.tools.eval.crossing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None,
                        help="model folder(s) to score, repeatable (default: weights/body, weights/flic)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the clip (default 96)")
    parser.add_argument("--write", type=Path, default=None, metavar="CLIP.mp4", help="also write the clip here")
    args = parser.parse_args(argv)

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.constants import WEIGHTS_ROOT
    from deeppose.engine.pipeline import PosePipeline

    frames, centres, strip = crossing_clip(args.frames)
    alone, centres_alone, _ = crossing_clip(args.frames, second=False, pillar=PILLAR)
    if args.write is not None:
        from deeppose.engine.recording import AnnotatedVideoWriter

        writer = AnnotatedVideoWriter(args.write, 30, (frames[0].shape[1], frames[0].shape[0]), threaded=False)
        try:
            for t, f in enumerate(frames):
                writer.write(f, t / 30)
        finally:
            writer.close()
    for m in args.model or [str(WEIGHTS_ROOT / "body"), str(WEIGHTS_ROOT / "flic")]:
        with PosePipeline(PipelineConfig(m, "onnxruntime", threads=2)) as pipe:
            figures = run_clip(pipe, frames)
            pipe.reset()   # a new clip
            figures_alone = run_clip(pipe, alone)
        s = score_ids(figures, centres, strip)
        scored = int(np.sum(np.abs(centres[:, 0] - centres[:, 1]) >= strip / 2))
        print(f"{Path(m).name}: {scored} of {len(frames)} frames scored; " + "; ".join(
            f"walking {'right' if who == 0 else 'left (in front)'}: a figure in {s['frames'][who]}, ids "
            f"{s['ids'][who]}, id changes {s['changes'][who]}" for who in (0, 1))
            + f"; second figures on one person {s['extra']}", flush=True)
        s = score_ids(figures_alone, centres_alone, strip)
        print(f"{Path(m).name}, one walker behind a {PILLAR} px pillar: a figure in {s['frames'][0]} of "
              f"{len(alone)} frames, ids {s['ids'][0]}, id changes {s['changes'][0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
