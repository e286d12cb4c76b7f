"""One person seen whole, turned or cut, against MediaPipe's figure: the test material that took back a
psi v2 stage 1 which read better on LSP val (docs/PSI_V2.md, session 11).

    python -m deeppose.tools.eval.cuts [--model DIR ...] [--peer FILE.task]

The cuts are made from walking.mp4 (:func:`cut_clips`): the clip upright (1280x720), turned 90
degrees clockwise (lying, 360x640) and 180 degrees (upside down, 640x360), both from the clip at
640x360, and with the head out of the frame (rows 100 to 720 and columns 320 to 1280, at 640x413).
MediaPipe's pose landmarker (VIDEO mode, one person) runs on the same frames; on these cuts its
figure is right by eye, so it stands in for the truth. For each full-body model, with and without
``rotate`` (``max_persons=1``), the tool prints per cut the frames with a figure and the share of
the 12 body joints both have (shoulders, elbows, wrists, hips, knees, ankles) within 0.2 diam of
MediaPipe's figure (PDJ@0.2 against it, :func:`agreement`), as labelled and with the figure's left
and right swapped where that agrees better (without a face in view a figure's sides can come out
mirrored).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FRACTION = 0.2
"""A joint agrees when it lies within this fraction of diam(MediaPipe's figure) of MediaPipe's joint (PDJ@0.2)."""


def cut_clips(frames: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The four cuts of walking.mp4's (H, W, 3) BGR ``frames`` (1280x720): {"upright", "turned 90",
    "turned 180", "head cut off": frames (H', W', 3) uint8 BGR} (see the module docstring)."""
    import cv2

    small = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames]
    return {"upright": list(frames),
            "turned 90": [np.ascontiguousarray(cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE)) for f in small],
            "turned 180": [np.ascontiguousarray(cv2.rotate(f, cv2.ROTATE_180)) for f in small],
            "head cut off": [cv2.resize(f[100:720, 320:1280], (640, 413), interpolation=cv2.INTER_AREA)
                             for f in frames]}


def agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[int, int, int]:
    """How many body joints of one figure agree with the reference (MediaPipe's) figure.

    Both are in the LSP skeleton (:data:`engine.skeletons.LSP`; the reference's neck and head top
    NaN, so only the 12 joints of :data:`tools.eval.peer.BLAZEPOSE_JOINTS` count). A joint agrees
    when it is within :data:`FRACTION` diam of the reference's
    (:func:`tools.eval.metrics.pdj_distances`, diam a shoulder to the opposite hip of the
    reference).

    Args:
        ours: (14, 2) our figure, pixels (NaN never agrees).
        reference: (14, 2) the reference figure, pixels.
    Returns:
        (agreeing as labelled, agreeing with our left and right swapped where that is more,
        joints scored).
    """
    from deeppose.engine.skeletons import LSP
    from deeppose.tools.eval.metrics import pdj_distances

    pred = np.stack([ours, ours[list(LSP.mirror)]])
    dist = pdj_distances(pred, np.stack([reference, reference]), LSP)
    near = np.sum(dist <= FRACTION, axis=1)
    return int(near[0]), int(near.max()), int(np.sum(~np.isnan(dist[0])))


def score_cut(results: list, peer_poses: list[np.ndarray], joint_index: list[int]) -> dict:
    """Frames drawn and agreement of one cut.

    Args:
        results: the pipeline's :class:`engine.pipeline.FrameResult` of every frame.
        peer_poses: per frame, MediaPipe's (P, 33, 2) landmarks in pixels.
        joint_index: the index in the model's skeleton of each LSP joint.
    Returns:
        {"drawn": frames with a figure, "labelled" and "either": shares of the joints of the
        first figure that agree with MediaPipe's first, over the frames where both drew one}.
    """
    from deeppose.engine.skeletons import LSP
    from deeppose.tools.eval.peer import peer_pose

    drawn = labelled = either = total = 0
    for r, found in zip(results, peer_poses):
        if not r.persons:
            continue
        drawn += 1
        if len(found):
            a, b, n = agreement(r.persons[0].pose[joint_index], peer_pose(found[0], LSP))
            labelled, either, total = labelled + a, either + b, total + n
    return {"drawn": drawn, "labelled": labelled / max(total, 1), "either": either / max(total, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeppose.tools.eval.cuts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None,
                        help="model folder(s) to score, repeatable (default: weights/body)")
    parser.add_argument("--peer", type=Path, default=None,
                        help="MediaPipe pose landmarker .task (default: models/peers/pose_landmarker_full.task "
                             "beside the shared data folder)")
    args = parser.parse_args(argv)

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.constants import WEIGHTS_ROOT, data_root
    from deeppose.engine.frames import process_clip
    from deeppose.engine.model import ModelError, read_manifest
    from deeppose.engine.pipeline import PosePipeline
    from deeppose.engine.skeletons import LSP
    from deeppose.tools.data.datasets import read_frames, walking_video
    from deeppose.tools.eval.peer import MediaPipePeer, PeerError

    models = args.model or [str(WEIGHTS_ROOT / "body")]
    for m in models:   # before the minutes of work
        try:
            missing = [j for j in LSP.joints if j not in read_manifest(m).skeleton.joints]
        except ModelError as e:
            print(f"cuts: error: {e}", file=sys.stderr)
            return 2
        if missing:
            print(f"cuts: error: model {m} has no {', '.join(missing)} (a full-body model is needed)", file=sys.stderr)
            return 2
    frames = read_frames(walking_video(), 144)
    if not frames:
        print(f"cuts: error: cannot read {walking_video()}", file=sys.stderr)
        return 2
    peer_path = args.peer or data_root().parent / "models" / "peers" / "pose_landmarker_full.task"
    clips = cut_clips(frames)
    try:
        peer = {}
        for name, clip in clips.items():
            with MediaPipePeer(peer_path) as mp:
                peer[name] = [mp.process(f, i / 30) for i, f in enumerate(clip)]
    except PeerError as e:
        print(f"cuts: error: {e}", file=sys.stderr)
        return 2
    print("MediaPipe: " + "; ".join(f"{name} {sum(len(p) > 0 for p in poses)}" for name, poses in peer.items())
          + f" of {len(frames)} frames with a figure", flush=True)
    for m in models:
        for rotate in (False, True):
            row = []
            with PosePipeline(PipelineConfig(m, "onnxruntime", rotate=rotate, max_persons=1, threads=2)) as pipe:
                index = [pipe.skeleton.joints.index(j) for j in LSP.joints]
                for name, clip in clips.items():
                    pipe.reset()
                    s = score_cut(process_clip(pipe, clip), peer[name], index)
                    row.append(f"{name} {s['drawn']} ({s['labelled']:.2f} / {s['either']:.2f})")
            print(f"{Path(m).name}{' --rotate' if rotate else ''}: frames with a figure (joints within "
                  f"{FRACTION} diam of MediaPipe's, as labelled / either side): " + "; ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
