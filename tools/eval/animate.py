"""Hard test material with known ground truth: a labelled still image animated into a clip by a
slow turn, zoom and pan (issue "Every visible person", item 5), so that every frame's joints are
known exactly. ``python -m deeppose.tools.eval.animate`` writes LSP val images turned through half a
turn as clips and scores the pipeline (and, with ``--peer``, MediaPipe's pose landmarker) on them.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np


def animation_affines(n: int, size: tuple[int, int], out_size: int, turn_deg: float = 180.0,
                      zoom: tuple[float, float] = (1.0, 1.25), pan: float = 0.1) -> np.ndarray:
    """The (n, 2, 3) affine maps, image pixels -> frame pixels, of an animation of one image:
    frame i turns the image by ``turn_deg * i / (n - 1)`` degrees clockwise on screen about its
    centre, scales it by a zoom going linearly from ``zoom[0]`` to ``zoom[1]`` (1.0: the image's
    longer side fills the square frame) and moves it by up to ``pan`` of the frame's side along
    a slow circle.

    Args:
        n: frames (>= 1).
        size: (width, height) of the image, pixels.
        out_size: side of the square frames, pixels.
    """
    w, h = size
    base = out_size / max(w, h)
    out = np.empty((n, 2, 3))
    for i in range(n):
        t = i / max(n - 1, 1)
        a = math.radians(turn_deg * t)
        s = base * (zoom[0] + (zoom[1] - zoom[0]) * t)
        c, si = math.cos(a) * s, math.sin(a) * s
        dx = out_size / 2 + pan * out_size * math.sin(2 * math.pi * t)
        dy = out_size / 2 + pan * out_size * (1 - math.cos(2 * math.pi * t)) / 2
        cx, cy = (w - 1) / 2, (h - 1) / 2
        out[i] = [[c, -si, dx - (c * cx - si * cy)], [si, c, dy - (si * cx + c * cy)]]
    return out


def animate(image: np.ndarray, pose: np.ndarray, n: int, out_size: int = 480, **kwargs) -> tuple[list, np.ndarray]:
    """Animate one labelled image (:func:`animation_affines`).

    Args:
        image: (H, W, 3) uint8 BGR.
        pose: (k, 2) its joints, pixels (NaN where unlabelled).
        n: frames.
        out_size: side of the square frames, pixels (the outside of the image is black).
    Returns:
        (n frames (out_size, out_size, 3) uint8 BGR, (n, k, 2) the joints in each frame, pixels).
    """
    import cv2

    h, w = image.shape[:2]
    maps = animation_affines(n, (w, h), out_size, **kwargs)
    frames = [cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
              for m in maps]
    poses = np.einsum("nij,kj->nki", maps[:, :, :2], np.asarray(pose, dtype=np.float64)) + maps[:, None, :, 2]
    return frames, poses


def _score(pose: np.ndarray, truth: np.ndarray, names: list[str], skeleton) -> tuple[int, int]:
    """(joints within 0.2 diam of the truth, joints scored) for one person of one frame: the
    truth's joints (``skeleton``'s, LSP) that the pose names (``pose``: (len(names), 2) pixels)."""
    from deeppose.tools.eval.metrics import pdj_distances

    named = [j for j, name in enumerate(skeleton.joints) if name in names]
    pred = np.full_like(truth, np.nan, dtype=np.float64)
    pred[named] = pose[[names.index(skeleton.joints[j]) for j in named]]
    dist = pdj_distances(pred[None], truth[None], skeleton)[0, named]   # NaN: not scored
    return int(np.sum(dist <= 0.2)), int(np.sum(~np.isnan(dist)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeppose.tools.eval.animate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10, help="LSP val images to animate (default 10)")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (default 60)")
    parser.add_argument("--turn", type=float, default=180.0, help="degrees turned over a clip (default 180)")
    parser.add_argument("--model", action="append", default=None,
                        help="model folder(s) to score, repeatable (default: weights/flic, weights/lsp, weights/body)")
    parser.add_argument("--rotate", action="store_true", help="PipelineConfig(rotate=True) for every model")
    parser.add_argument("--confirm", type=int, default=None, metavar="N",
                        help="PipelineConfig(confirm_hits=N) for every model (default: the pipeline's)")
    parser.add_argument("--peer", type=Path, default=None, help="MediaPipe pose landmarker .task to score too")
    args = parser.parse_args(argv)

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.constants import WEIGHTS_ROOT
    from deeppose.engine.frames import process_clip
    from deeppose.engine.pipeline import PosePipeline, shows_joints
    from deeppose.tools.data.datasets import load_dataset, load_image

    ds = load_dataset("lsp", None, "val")
    clips = []
    for e in ds.examples[:args.images]:
        clips.append(animate(load_image(e.image_path), e.pose, args.frames, turn_deg=args.turn))
    models = args.model or [str(WEIGHTS_ROOT / m) for m in ("flic", "lsp", "body")]
    for m in models:
        drawn = shown = persons = ok = tot = 0
        ids = []
        with PosePipeline(PipelineConfig(m, "onnxruntime", rotate=args.rotate, threads=2, confirm_hits=args.confirm)) as pipe:
            names = list(pipe.skeleton.joints)
            for frames, truth in clips:
                pipe.reset()
                seen = set()
                for i, r in enumerate(process_clip(pipe, frames)):   # as the video command draws them
                    persons += len(r.persons)
                    drawn += bool(r.persons)
                    # a figure the user sees: enough joints sure enough to be drawn (NaN: psi v1, all drawn)
                    shown += any(p.confidence is None or shows_joints(p.confidence) for p in r.persons)
                    seen |= {p.track_id for p in r.persons}
                    if r.persons:   # the figure nearest the truth
                        best = max((_score(p.pose, truth[i], names, ds.skeleton) for p in r.persons),
                                   key=lambda s: s[0])
                        ok, tot = ok + best[0], tot + best[1]
                ids.append(len(seen))
        n = len(clips) * args.frames
        print(f"{Path(m).name}{' --rotate' if args.rotate else ''}: figure in {drawn}/{n} frames ({drawn / n:.2f}; "
              f"with 3 or more joints shown {shown / n:.2f}), "
              f"{persons / n:.2f} persons per frame, ids per clip {np.mean(ids):.1f}, "
              f"joints within 0.2 diam of the truth where drawn {ok / max(tot, 1):.2f}", flush=True)
    if args.peer:
        from deeppose.tools.eval.peer import BLAZEPOSE_JOINTS, MediaPipePeer

        drawn = ok = tot = 0
        names = list(BLAZEPOSE_JOINTS)
        for frames, truth in clips:
            with MediaPipePeer(args.peer) as peer:
                for i, f in enumerate(frames):
                    found = peer.process(f, i / 30)
                    drawn += len(found) > 0
                    if len(found):
                        pose = np.stack([found[0][BLAZEPOSE_JOINTS[j]] for j in names])
                        s = _score(pose, truth[i], names, ds.skeleton)
                        ok, tot = ok + s[0], tot + s[1]
        n = len(clips) * args.frames
        print(f"MediaPipe: figure in {drawn}/{n} frames ({drawn / n:.2f}), joints within 0.2 diam of the truth "
              f"where drawn {ok / max(tot, 1):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
