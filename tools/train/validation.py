"""Validation during training: the cascade of the stages trained so far run over a split, the
manifest's val metrics of its poses (per stage, and per dataset part of psi v2's ``body`` data),
and their one-line summary in the log."""
from __future__ import annotations

import numpy as np
import torch

from deeppose.engine.backends.torch_backend import TorchRegressor
from deeppose.engine.cascade import Cascade
from deeppose.engine.network import PoseRegressor
from deeppose.tools.eval.metrics import four_limb_pcp
from deeppose.tools.train.splits import BODY_PARTS, TrainingData


def predict(nets: list[PoseRegressor], data: TrainingData, sigma: float, device: torch.device,
            stage_joints: list | None = None, stage_follow: list | None = None) -> np.ndarray:
    """Run the cascade of ``nets`` (stage s refining the joints ``stage_joints[s - 1]``, None:
    all, and moving the followers ``stage_follow[s - 1]`` with their leaders) over every example
    of ``data``; returns (S, N, k, 2) pixels."""
    from deeppose.tools.eval.evaluate import cascade_poses

    cascade = Cascade([TorchRegressor(n, device=str(device), fp16=False) for n in nets], data.ds.skeleton, sigma,
                      [n.input_size for n in nets], stage_joints=stage_joints, stage_follow=stage_follow)
    return cascade_poses(data.ds, cascade, data.b0, load_image=data.image_by_path)[0]


def val_metrics(stage_poses: np.ndarray, data: TrainingData) -> dict:
    """The manifest's val metrics ({"stage<s>": PDJ@0.1 and @0.2 per joint, PCP per limb, and
    their means; :func:`tools.eval.metrics.val_metrics_entry`) for every stage's poses (S, N, k, 2)."""
    from deeppose.tools.eval.metrics import stage_metrics, val_metrics_entry

    return {f"stage{s}": val_metrics_entry(stage_metrics(poses, data.poses, data.ds.skeleton))
            for s, poses in enumerate(stage_poses, start=1)}


def part_metrics(poses: np.ndarray, data: TrainingData) -> dict:
    """The val metrics of each dataset part of ``body`` data ({"flic": entry, "lsp": entry}, as
    :func:`val_metrics` gives per stage) for one stage's poses (N, k, 2)."""
    from deeppose.tools.eval.metrics import stage_metrics, val_metrics_entry

    out = {}
    for name in BODY_PARTS:
        idx = [i for i, s in enumerate(data.sources) if s.startswith(f"{name}:")]
        if idx:
            out[name] = val_metrics_entry(stage_metrics(poses[idx], data.poses[idx], data.ds.skeleton))
    return out


def summary(m: dict) -> str:
    p1, p2 = m["pdj@0.1"], m["pdj@0.2"]

    def v(d, name):   # None: nothing to count (val_metrics_entry)
        x = d.get(name)
        return np.nan if x is None else x

    elb = (v(p2, "l_elbow") + v(p2, "r_elbow")) / 2
    wri = (v(p2, "l_wrist") + v(p2, "r_wrist")) / 2
    four = four_limb_pcp(m["pcp"]) if "pcp" in m else None
    return (f"PDJ@0.1 {v(p1, 'mean'):.3f}  PDJ@0.2 {v(p2, 'mean'):.3f} (elbows {elb:.3f}, wrists {wri:.3f})"
            + (f"  PCP {v(m['pcp'], 'mean'):.3f}" if "pcp" in m else "")
            + (f" (arms {four['upper_arm']:.3f}/{four['lower_arm']:.3f}, legs {four['upper_leg']:.3f}/"
               f"{four['lower_leg']:.3f}, mean of four {four['mean_of_four']:.3f})" if four else ""))
