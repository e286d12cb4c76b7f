"""The training loop behind `main.py train` (see tools/train/train.py for the protocol)."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from deeppose.engine.backends.torch_backend import TorchRegressor
from deeppose.engine.cascade import Cascade
from deeppose.engine.geometry import INPUT_SIZE, PIXEL_MEAN, PIXEL_STD, crop_boxes, diam
from deeppose.engine.model import ModelError, follow_indices, load_stage_module, read_manifest, write_manifest
from deeppose.engine.network import BACKBONE_PRESETS, PRESETS, BackboneRegressor, PoseRegressor, build_network
from deeppose.engine.skeletons import get_skeleton
from deeppose.tools.data.datasets import DatasetError, PoseDataset, load_dataset, load_image
from deeppose.tools.eval.metrics import four_limb_pcp, record_val_metrics

log = logging.getLogger("deeppose.train")


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in checkpoints and the manifest)."""

    dataset: str = "flic"
    data: Path | None = None
    out: Path = Path("weights/flic")
    run_dir: Path = Path("runs/flic")
    stages: list[int] = field(default_factory=lambda: [1, 2, 3])
    epochs: int = 40
    refine_epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    preset: str = "compact"
    sigma: float = 1.0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    resume: bool = False
    limit: int | None = None
    val_limit: int | None = None
    max_steps: int | None = None
    workers: int = 0           # DataLoader worker processes making batches (0: in the training process)
    val_every: int = 1         # validate and checkpoint every N epochs (and after the last)
    # augmentation (stage 1: of b0; stages >= 2: of the simulated joint box)
    shift: float = 0.08        # max translation, fraction of the box side
    scale: float = 0.12        # max log-scale change (exp(+-scale))
    rotate_deg: float = 12.0   # max rotation, degrees
    color: float = 0.25        # max brightness/contrast change (normalized units / factor)
    # stages >= 2
    refine_lr: float = 1e-3    # peak learning rate (the network starts from stage s-1's weights)
    refine_input_size: int = INPUT_SIZE  # crop side of stages >= 2, pixels
    refine_preset: str | None = None     # network preset of stages >= 2 (None: ``preset``); psi v1 under a psi v2 stage 1
    refine_joints: list[str] | None = None  # joints stages >= 2 refine (None: all)
    refine_follow: dict[str, str] | None = None  # stages >= 2: {follower: leader}, followers not cropped
    neighbours: bool = False   # also supervise the other labelled joints inside each joint box
    init: Path | None = None   # model folder whose stage-s checkpoint starts stage s (fine-tuning)
    extra_data: list[str] = field(default_factory=list)  # other datasets' train splits added to train (union of joints)
    loss: str = "l2"           # "l2" (Eq. 4), "l1", "smooth_l1" or "laplace" (psi v2: NLL with the learned scale)
    # psi v2 (backbone presets)
    input_size: int = INPUT_SIZE  # crop side of stage 1, pixels
    rotate_wide: float = 0.0   # fraction of boxes turned by up to 180 degrees (the others by up to rotate_deg)
    joint_box: float = 0.0     # stage 1: fraction of boxes drawn around the labelled joints instead of b0
    negatives: float = 0.0     # stage 1: fraction of crops that hold nobody (presence target 0)
    presence_weight: float = 0.1  # weight of the presence loss (binary cross-entropy)
    occlude: float = 0.0       # fraction of crops with a random grey rectangle (cut-out) over a part
    blur: float = 0.0          # fraction of crops blurred (Gaussian, sigma up to 2 px)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


class TrainingData:
    """A split held in memory: decoded images, ground-truth pose vectors and b0 boxes."""

    def __init__(self, ds: PoseDataset, b0: np.ndarray, sources: list[str]):
        self.ds = ds
        self.poses = ds.poses()                       # (N, k, 2) pixels
        self.b0 = np.asarray(b0, dtype=np.float64)   # (N, 4)
        self.sources = sources
        self.diam = diam(self.poses, ds.skeleton)    # (N,)
        self._images: dict[Path, np.ndarray] = {}
        for e in tqdm(ds.examples, desc=f"loading {ds.name} {ds.split} images", unit="img", leave=False, disable=None):
            if e.image_path not in self._images:
                self._images[e.image_path] = load_image(e.image_path)

    def __len__(self) -> int:
        return len(self.ds)

    def image(self, i: int) -> np.ndarray:
        """The decoded image of example i, (H, W, 3) uint8 BGR."""
        return self._images[self.ds.examples[i].image_path]

    def image_by_path(self, path: Path) -> np.ndarray:
        """The decoded image at ``path`` (one of the split's images)."""
        return self._images[path]


def _rot_inv(v: np.ndarray, angle: float) -> np.ndarray:
    """R(-angle) @ v for (..., 2) vectors."""
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1]], axis=-1)


class Batch(NamedTuple):
    """One training batch as :class:`SampleMaker` builds it on the CPU.

    The crops stay uint8 until they reach the training device, where :meth:`network_input`
    normalizes them (a quarter of the bytes to copy, and the float work off the data workers).

    Fields:
        crops: (n, S, S, 3) uint8, BGR, the crops N(x; b) of the (jittered) boxes.
        gain, bias: (n,) float32 contrast factor and brightness offset of each crop, applied
            in normalized pixel units (colour augmentation).
        target: (n, k, 2) float32 normalized joints N(y; b) (Eq. 1), 0 where unlabelled.
        mask: (n, k) bool, the joints in the loss.
        presence: (n,) float32, 1 where the crop's box holds the person, 0 for a negative crop.
    """

    crops: torch.Tensor
    gain: torch.Tensor
    bias: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    presence: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        """The batch on ``device`` (non-blocking copies; pinned memory makes them asynchronous)."""
        return Batch(*(t.to(device, non_blocking=True) for t in self))

    def network_input(self) -> torch.Tensor:
        """psi's input (n, 3, S, S) float32 on the batch's device: :func:`engine.geometry.to_network_input`
        of the crops, times ``gain`` plus ``bias``."""
        x = self.crops.permute(0, 3, 1, 2).float()
        return (x - PIXEL_MEAN) * (self.gain / PIXEL_STD)[:, None, None, None] + self.bias[:, None, None, None]


class SampleMaker:
    """Builds augmented training batches (crops and normalized targets) for one stage.

    ``rng`` draws the augmentation (default: seeded with ``cfg.seed``). In training,
    :class:`StageBatches` replaces it with a generator seeded per batch, so the batches do not
    depend on which process makes them; the one given here serves direct calls (tests).
    """

    def __init__(self, data: TrainingData, cfg: TrainConfig, rng: np.random.Generator | None = None,
                 size: int = INPUT_SIZE):
        self.data = data
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed) if rng is None else rng
        self.mirror = np.asarray(data.ds.skeleton.mirror)
        self.k = data.ds.skeleton.k
        self.size = size   # crop side, pixels

    def _angle(self) -> float:
        """A box's rotation, radians: up to 180 degrees for a ``rotate_wide`` fraction (people
        lying, upside down), else up to ``rotate_deg``."""
        c = self.cfg
        limit = 180.0 if c.rotate_wide and self.rng.random() < c.rotate_wide else c.rotate_deg
        return math.radians(self.rng.uniform(-limit, limit))

    def _jitter(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        c = self.cfg
        box = box.copy()
        box[:2] += self.rng.uniform(-c.shift, c.shift, 2) * box[2:4]
        box[2:4] *= math.exp(self.rng.uniform(-c.scale, c.scale))
        return box, self._angle()

    def _crop(self, crops: np.ndarray, j: int, image: np.ndarray, box: np.ndarray, angle: float, flip: bool) -> None:
        crop_boxes(image, box[None], self.size, angles=np.array([angle]), out=crops[j:j + 1])
        if flip:
            crops[j] = crops[j, :, ::-1]
        c = self.cfg
        if c.blur and self.rng.random() < c.blur:
            crops[j] = cv2.GaussianBlur(crops[j], (0, 0), self.rng.uniform(0.5, 2.0))
        if c.occlude and self.rng.random() < c.occlude:   # cut-out: a grey rectangle over a part
            w, h = (self.rng.uniform(0.15, 0.4, 2) * self.size).astype(int)
            x, y = self.rng.integers(0, self.size - w), self.rng.integers(0, self.size - h)
            crops[j, y:y + h, x:x + w] = self.rng.integers(0, 256)

    def _finish(self, crops: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                presence: np.ndarray | None = None) -> Batch:
        n, c = len(crops), self.cfg.color
        gain = self.rng.uniform(1 - c, 1 + c, n).astype(np.float32)
        bias = self.rng.uniform(-c, c, n).astype(np.float32)
        presence = np.ones(n, np.float32) if presence is None else presence.astype(np.float32)
        return Batch(torch.from_numpy(crops), torch.from_numpy(gain), torch.from_numpy(bias),
                     torch.from_numpy(targets.astype(np.float32)), torch.from_numpy(mask), torch.from_numpy(presence))

    def _joint_box(self, i: int) -> np.ndarray | None:
        """A square box around person i's labelled joints, 1.15 to 1.6 times their extent (the box
        a tracked person's previous pose gives at run time); None with fewer than 3 labelled."""
        pose = self.data.poses[i]
        pose = pose[np.isfinite(pose).all(1)]
        if len(pose) < 3:
            return None
        lo, hi = pose.min(0), pose.max(0)
        side = max(hi - lo) * self.rng.uniform(1.15, 1.6)
        return np.array([*(lo + hi) / 2, side, side]) if side > 1 else None

    def _negative_box(self, i: int) -> np.ndarray:
        """A box that holds nobody for person i: the person's b0 moved off the person by 1 to 2
        box sides, or a box of a quarter to a third of b0 on one of the person's joints."""
        box = self.data.b0[i].copy()
        pose = self.data.poses[i]
        labelled = np.flatnonzero(np.isfinite(pose).all(1))
        if self.rng.random() < 0.5 and len(labelled):
            box[:2] = pose[self.rng.choice(labelled)]
            box[2:4] *= self.rng.uniform(0.25, 0.35)
        else:
            a = self.rng.uniform(0, 2 * math.pi)
            box[:2] += np.array([math.cos(a), math.sin(a)]) * box[2:4] * self.rng.uniform(1.0, 2.0)
        return box

    def stage1(self, idx: np.ndarray) -> Batch:
        """Batch for stage 1: crops N(x; b0~) and targets N(y; b0~) (k, 2), mask (k,).

        psi v2's options (0 by default): a ``joint_box`` fraction of the boxes is drawn around the
        labelled joints instead of b0, and a ``negatives`` fraction of the crops holds nobody
        (:meth:`_negative_box`; presence 0, no joint in the loss)."""
        n, c = len(idx), self.cfg
        crops = np.empty((n, self.size, self.size, 3), np.uint8)
        targets = np.zeros((n, self.k, 2))
        mask = np.zeros((n, self.k), bool)
        presence = np.ones(n, np.float32)
        flips = self.rng.random(n) < 0.5
        for j, i in enumerate(idx):
            base = self.data.b0[i]
            if c.negatives and self.rng.random() < c.negatives:
                base, presence[j] = self._negative_box(i), 0.0
            elif c.joint_box and self.rng.random() < c.joint_box:
                base = b if (b := self._joint_box(i)) is not None else base
            box, angle = self._jitter(base)
            self._crop(crops, j, self.data.image(i), box, angle, flips[j])
            if not presence[j]:
                continue
            t = _rot_inv(self.data.poses[i] - box[:2], angle) / box[2:4]
            if flips[j]:
                t = t[self.mirror]
                t[:, 0] = -t[:, 0]
            mask[j] = np.isfinite(t).all(1)
            targets[j] = np.nan_to_num(t)
        return self._finish(crops, targets, mask, presence)

    def refine(self, pairs: np.ndarray, stats: dict) -> Batch:
        """Batch for a stage s >= 2 (Eq. 8): pairs (n, 2) of (example, joint).

        Returns crops of b = (y_i + delta, sigma*diam~) and targets N(y_j; b) (n, k, 2). The
        crop's own joint i (psi_i, the output the cascade uses) is always in the mask; with
        ``cfg.neighbours`` every other labelled joint inside the box is supervised too, which
        gives each crop more signal, but measured worse on FLIC val early in training (the
        default, like the paper, supervises psi_i alone).
        """
        n = len(pairs)
        crops = np.empty((n, self.size, self.size, 3), np.uint8)
        targets = np.zeros((n, self.k, 2))
        mask = np.zeros((n, self.k), bool)
        flips = self.rng.random(n) < 0.5
        mu, chol, ratios = stats["mean"], stats["chol"], stats["diam_ratio"]
        for j, (i, joint) in enumerate(pairs):
            y = self.data.poses[i, joint]
            d = self.data.diam[i]
            delta = (mu[joint] + chol[joint] @ self.rng.standard_normal(2)) * d
            side = self.cfg.sigma * d * ratios[self.rng.integers(len(ratios))]
            box = np.array([y[0] + delta[0], y[1] + delta[1], side, side])
            angle = self._angle()
            self._crop(crops, j, self.data.image(i), box, angle, flips[j])
            t = _rot_inv(self.data.poses[i] - box[:2], angle) / box[2:4]  # (k, 2)
            m = np.zeros(self.k, bool)
            if self.cfg.neighbours:
                m = np.isfinite(t).all(1) & (np.abs(t) <= 0.5).all(1)
            m[joint] = True
            if flips[j]:
                t, m = t[self.mirror] * np.array([-1.0, 1.0]), m[self.mirror]
            targets[j] = np.nan_to_num(t)
            mask[j] = m
        return self._finish(crops, targets, mask)


def epoch_items(stage: int, train: TrainingData, joints: list[int] | None, rng: np.random.Generator) -> np.ndarray:
    """One epoch's training items in a random order: stage 1, the person indices (N,) int; a
    stage s >= 2, the (person, joint) index pairs (M, 2) int of every labelled joint it refines
    (``joints``: joint indices; None: all), each pair one simulated box per epoch (Eq. 8)."""
    if stage == 1:
        return rng.permutation(len(train))
    labelled = np.isfinite(train.poses).all(-1) & np.isfinite(train.diam)[:, None]
    if joints is not None:   # only the joints this stage refines
        keep = np.zeros(labelled.shape[1], bool)
        keep[joints] = True
        labelled &= keep
    pairs = np.argwhere(labelled)
    return pairs[rng.permutation(len(pairs))]


class StageBatches(torch.utils.data.Dataset):
    """The batches of one stage's training run, item g = optimizer step g (a ``DataLoader``
    with ``batch_size=None`` and ``--workers`` processes makes them ahead of the training loop).

    Step g is batch b = g mod steps_per_epoch of epoch e = g div steps_per_epoch. The epoch's
    order is drawn from (seed, stage, e) and the batch's augmentation from (seed, stage, rank, g),
    so a run makes the same batches with any number of workers and after ``--resume``. Under
    torchrun process ``rank`` takes every ``world``-th batch of the epoch's order.
    """

    def __init__(self, maker: SampleMaker, stage: int, joints: list[int] | None, stats: dict | None,
                 steps_per_epoch: int, steps: range, world: int = 1, rank: int = 0):
        self.maker, self.stage, self.joints, self.stats = maker, stage, joints, stats
        self.steps_per_epoch, self.steps, self.world, self.rank = steps_per_epoch, steps, world, rank
        self._epoch, self._items = -1, None

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Batch:
        g = self.steps[i]
        epoch, b = divmod(g, self.steps_per_epoch)
        seed, bs = self.maker.cfg.seed, self.maker.cfg.batch_size
        if epoch != self._epoch:
            order = np.random.default_rng([seed, self.stage, epoch])
            self._items = epoch_items(self.stage, self.maker.data, self.joints, order)
            self._epoch = epoch
        first = (b * self.world + self.rank) * bs
        self.maker.rng = np.random.default_rng([seed, self.stage, self.rank, g])
        batch = self._items[first:first + bs]
        return self.maker.stage1(batch) if self.stage == 1 else self.maker.refine(batch, self.stats)


def masked_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 4: squared L2 distance of normalized joints, summed over labelled joints, averaged over the batch."""
    err = (pred.view_as(target) - target).pow(2).sum(-1) * mask
    return err.sum() / pred.shape[0]


LOSSES = ("l2", "l1", "smooth_l1", "laplace")


def masked_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training loss over labelled joints, summed per joint and averaged over the batch.

    Args:
        kind: "l2" (the paper's Eq. 4, :func:`masked_l2`), "l1" (|dx| + |dy|) or "smooth_l1"
            (Huber with beta 0.05 in normalized box units, per coordinate).
        pred: (B, 2k) network outputs; target: (B, k, 2) normalized joints; mask: (B, k) bool.
    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "l2":
        return masked_l2(pred, target, mask)
    if kind == "laplace":
        raise ValueError("the laplace loss needs the joints' scales: use laplace_nll")
    diff = pred.view_as(target) - target
    if kind == "l1":
        per = diff.abs().sum(-1)
    elif kind == "smooth_l1":
        per = torch.nn.functional.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=0.05).sum(-1)
    else:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    return (per * mask).sum() / pred.shape[0]


LOG_SCALE_MIN = math.log(1e-3)
"""Smallest Laplace scale the loss lets psi v2 claim, box units (a thousandth of the box)."""


def laplace_nll(pred: torch.Tensor, log_scale: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the labelled joints under a Laplace distribution with the
    predicted per-joint scale b_i = exp(log_scale_i) (Li et al., ICCV 2021, RLE without its flow):
    per coordinate log(2 b_i) + |y - mu| / b_i, summed over the two coordinates of the labelled
    joints, averaged over the batch.

    Args:
        pred: (B, 2k) normalized joints; log_scale: (B, k) log b_i in box units;
        target: (B, k, 2) normalized joints; mask: (B, k) bool.
    """
    ls = log_scale.clamp(min=LOG_SCALE_MIN)
    per = (pred.view_as(target) - target).abs().sum(-1) * torch.exp(-ls) + 2 * (ls + math.log(2.0))
    return (per * mask).sum() / pred.shape[0]


def training_loss(cfg: TrainConfig, model, batch: Batch, v2: bool) -> torch.Tensor:
    """The loss of one batch: :func:`masked_loss` of ``cfg.loss`` for psi v1 (L2, Eq. 4, where
    ``cfg.loss`` is ``laplace``: a psi v1 refinement stage under a psi v2 stage 1 has no scale
    head); for psi v2 the pose loss (``laplace``: :func:`laplace_nll` with the scale head) plus
    ``cfg.presence_weight`` times the binary cross-entropy of the presence logit (mean over the batch)."""
    x = batch.network_input()
    if not v2:
        return masked_loss("l2" if cfg.loss == "laplace" else cfg.loss, model(x), batch.target, batch.mask)
    pose, log_scale, presence = model(x, heads=True)
    if cfg.loss == "laplace":
        loss = laplace_nll(pose, log_scale, batch.target, batch.mask)
    else:   # the scale head still learns: the NLL with the pose detached
        loss = masked_loss(cfg.loss, pose, batch.target, batch.mask) + laplace_nll(
            pose.detach(), log_scale, batch.target, batch.mask)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(presence, batch.presence)
    return loss + cfg.presence_weight * bce


def _dist() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialized (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


def predict(nets: list[PoseRegressor], data: TrainingData, sigma: float, device: torch.device,
            stage_joints: list | None = None, stage_follow: list | None = None) -> np.ndarray:
    """Run the cascade of ``nets`` (stage s refining the joints ``stage_joints[s - 1]``, None:
    all, and moving the followers ``stage_follow[s - 1]`` with their leaders) over every example
    of ``data``; returns (S, N, k, 2) pixels."""
    from deeppose.tools.eval.evaluate import cascade_poses

    cascade = Cascade([TorchRegressor(n, device=str(device), fp16=False) for n in nets], data.ds.skeleton, sigma,
                      [n.input_size for n in nets], stage_joints=stage_joints, stage_follow=stage_follow)
    return cascade_poses(data.ds, cascade, data.b0, load_image=data.image_by_path)[0]


def displacement_stats(pred: np.ndarray, data: TrainingData) -> dict:
    """Per-joint normal fit of the stage's errors (y_i^{s-1} - y_i) / diam(y) on training data (Eq. 8).

    Returns mean (k, 2), cov (k, 2, 2), chol (k, 2, 2) and diam_ratio (M,), the observed
    diam(y^{s-1}) / diam(y) values used to jitter the joint box size.
    """
    err = (pred - data.poses) / data.diam[:, None, None]
    k = err.shape[1]
    mean = np.zeros((k, 2))
    cov = np.zeros((k, 2, 2))
    chol = np.zeros((k, 2, 2))
    for j in range(k):
        e = err[:, j]
        e = e[np.isfinite(e).all(1)]
        mean[j] = e.mean(0)
        cov[j] = np.cov(e.T) + 1e-6 * np.eye(2)
        chol[j] = np.linalg.cholesky(cov[j])
    ratio = diam(pred, data.ds.skeleton) / data.diam
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return {"mean": mean, "cov": cov, "chol": chol, "diam_ratio": np.clip(ratio, 0.5, 2.0)}


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


def _summary(m: dict) -> str:
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


def _save_atomic(obj, path: Path) -> None:
    from deeppose.engine.outputs import replaced_atomically

    with replaced_atomically(path, suffix=path.suffix) as tmp:
        torch.save(obj, tmp)


POSTFIX_EVERY = 20
"""Optimizer steps between two updates of the progress bar's loss and speed."""


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p))
    return f


class StageTrainer:
    """Trains one stage, with a checkpoint every validated epoch and resume."""

    def __init__(self, stage: int, cfg: TrainConfig, train: TrainingData, val: TrainingData,
                 prev: list[PoseRegressor], device: torch.device, prev_joints: list | None = None,
                 prev_follow: list | None = None):
        """``prev``: the trained stages 1..s-1; ``prev_joints``: the joint indices each of them
        refines (``ModelInfo.stage_joints``; None entries or None: every joint); ``prev_follow``:
        their followers (``ModelInfo.stage_follow``; None: none)."""
        self.stage, self.cfg, self.train, self.val, self.prev, self.device = stage, cfg, train, val, prev, device
        names = train.ds.skeleton.joints
        # the joints each stage refines: stages 1..s-1 as the model folder has them, this one from the config
        self.own_joints = None if stage == 1 or cfg.refine_joints is None else [names.index(j) for j in cfg.refine_joints]
        self.stage_joints = list(prev_joints or [None] * len(prev)) + [self.own_joints]
        own_follow = None if stage == 1 or not cfg.refine_follow else follow_indices(
            cfg.refine_follow, list(names), self.own_joints)
        self.stage_follow = list(prev_follow or [None] * len(prev)) + [own_follow]
        self.dir = cfg.run_dir / f"stage{stage}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.dir / "last.pt"
        self.k = train.ds.skeleton.k

    def run(self) -> tuple[PoseRegressor, dict, dict | None]:
        """Train the stage (resuming from the run folder's checkpoint with ``--resume``).

        Every ``--val-every``-th epoch, after the last one and at a ``--max-steps`` stop, the
        cascade up to this stage is validated, a history entry is added (train loss and
        samples/s averaged over the steps since the previous entry, and the val metrics), and
        the checkpoint (model, optimizer, schedule, step, dropout RNG) is written.

        Returns:
            (the trained network in eval mode, {"history", "epochs", "val_metrics"}, the fitted
            displacement distribution of stage s-1 (Eq. 8), None for stage 1).
        Raises:
            ModelError: ``--resume`` from a checkpoint of another network configuration.
            DatasetError: fewer training items than one batch per process.
        """
        cfg = self.cfg
        torch.manual_seed(cfg.seed + self.stage)
        size = cfg.input_size if self.stage == 1 else cfg.refine_input_size
        preset = cfg.preset if self.stage == 1 else (cfg.refine_preset or cfg.preset)
        net = build_network(self.k, preset, size)
        v2 = isinstance(net, BackboneRegressor)
        init = _init_checkpoint(cfg, self.stage)
        if init is not None:  # fine-tune a trained stage s
            loaded = start_from(net, init)
            log.info("stage %d: starts from %s (%s)", self.stage, init, loaded)
        elif self.prev and getattr(self.prev[-1], "preset", None) != preset:   # another network: nothing carries over
            log.info("stage %d: %s starts from scratch (stage %d is %s)", self.stage, preset, self.stage - 1,
                     getattr(self.prev[-1], "preset", None))
        elif self.prev:  # start from the previous stage: its features already find body parts
            loaded = transfer_weights(net, self.prev[-1].state_dict(), f"stage {self.stage - 1}")
            log.info("stage %d: starts from stage %d (%s)", self.stage, self.stage - 1, loaded)
        elif v2:   # psi v2 from scratch: the backbone starts from its ImageNet weights
            from deeppose.tools.train.pretrained import load_backbone

            log.info("stage %d: backbone from %s", self.stage, load_backbone(net))
        net = net.to(self.device)
        lr = cfg.lr if self.stage == 1 else cfg.refine_lr
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        epochs = cfg.epochs if self.stage == 1 else cfg.refine_epochs
        ck = None
        if cfg.resume and self.ckpt_path.is_file():
            ck = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
            was = dict(ck.get("config") or {}, refine_joints=(ck.get("train_config") or {}).get("refine_joints"))
            now = dict(net.config(), refine_joints=cfg.refine_joints)
            differ = [key for key in now if was.get(key) != now[key] and (key != "refine_joints" or self.stage > 1)]
            if differ:
                what = ", ".join(f"{key} {was.get(key)!r} (this run: {now[key]!r})" for key in differ)
                raise ModelError(f"{self.ckpt_path} was trained with {what}: drop --resume or use another --run-dir")
        stats = ck.get("stats") if ck else None
        rank, world = _dist()
        if self.stage > 1 and stats is None:
            if rank == 0:   # one process runs stage s-1 over the training split; the others receive the fit
                t = time.time()
                pred = predict(self.prev, self.train, cfg.sigma, self.device, self.stage_joints[:-1],
                               self.stage_follow[:-1])
                stats = displacement_stats(pred[-1], self.train)
                log.info("stage %d: fitted stage %d displacement distribution on %d training persons in %.0f s; "
                         "per-joint error std (diam units): %s", self.stage, self.stage - 1, len(self.train),
                         time.time() - t, np.round(np.sqrt(np.diagonal(stats["cov"], axis1=1, axis2=2)).mean(1), 3).tolist())
            if world > 1:
                box = [stats]
                torch.distributed.broadcast_object_list(box, src=0)
                stats = box[0]
        n_items = len(epoch_items(self.stage, self.train, self.own_joints, np.random.default_rng(0)))
        # Under torchrun every process draws the same epoch order and takes every world-th
        # batch; gradients are averaged by DistributedDataParallel, so one step still covers
        # batch_size x world samples.
        if n_items < cfg.batch_size * world:
            raise DatasetError(f"stage {self.stage} has {n_items} training items, fewer than --batch-size "
                               f"{cfg.batch_size} x {world} process(es): lower the batch size")
        steps_per_epoch = n_items // (cfg.batch_size * world)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, min(300, total // 10 + 1)))
        first_step, history, final_metrics = 0, [], {}
        if ck is not None:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            # the step to go on from (a --max-steps stop can fall inside an epoch); a checkpoint
            # written before steps were recorded goes on at its epoch's end, with other batches
            first_step, history = ck.get("step", ck["epoch"] * steps_per_epoch), ck["history"]
            final_metrics = ck.get("val_metrics", {})
            torch.set_rng_state(ck["rng"]["torch"])   # dropout
            if self.device.type == "cuda" and ck["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
            log.info("stage %d: resumed from %s at epoch %d/%d", self.stage, self.ckpt_path, ck["epoch"], epochs)
        model = net
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        last = total if not cfg.max_steps else min(total, cfg.max_steps)
        steps = range(first_step, last)
        batches = StageBatches(SampleMaker(self.train, cfg, size=size), self.stage,
                               self.own_joints, stats, steps_per_epoch, steps, world, rank)
        # Workers are forked: they share the decoded images and never touch the GPU.
        loader = torch.utils.data.DataLoader(
            batches, batch_size=None, shuffle=False, num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
            **({"multiprocessing_context": "fork", "prefetch_factor": 4}
               if cfg.workers else {}))
        bar = tqdm(total=len(steps), desc=f"stage {self.stage}", unit="step", disable=None if rank == 0 else True,
                   mininterval=1.0)
        # the loss is summed on the device and read back only for the progress bar and the log
        # (a .item() per step would make the CPU wait for the GPU at every step)
        t0, seen, loss_sum = time.time(), 0, torch.zeros((), device=self.device)
        model.train()
        for step, batch in zip(steps, loader):
            batch = batch.to(self.device)
            loss = training_loss(cfg, model, batch, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sched.step()
            n = len(batch.mask) * world
            seen += n
            loss_sum += loss.detach() * n  # this process's loss stands for all
            epoch = step // steps_per_epoch + 1   # 1-based, the epoch this step belongs to
            bar.update()
            if (step + 1) % POSTFIX_EVERY == 0:
                bar.set_postfix(epoch=f"{epoch}/{epochs}",
                                loss=f"{loss_sum.item() / seen:.4f}", samples_s=f"{seen / (time.time() - t0):.0f}",
                                lr=f"{sched.get_last_lr()[0]:.1e}", refresh=False)
            end = step + 1 == last
            if not end and ((step + 1) % steps_per_epoch != 0 or epoch % cfg.val_every != 0):
                continue
            # the end of a validated epoch (every --val-every-th, and the last), or of --max-steps
            net.eval()
            if rank == 0:  # process 0 validates and writes the checkpoint; the others wait
                val_pred = predict(self.prev + [net], self.val, cfg.sigma, self.device, self.stage_joints, self.stage_follow)
                metrics = val_metrics(val_pred, self.val)
                entry = {"epoch": epoch, "loss": loss_sum.item() / max(seen, 1),
                         "samples_per_s": seen / (time.time() - t0), "val": metrics[f"stage{self.stage}"]}
                final_metrics = metrics
                history.append(entry)
                log.info("stage %d epoch %d/%d: train loss %.4f, %.0f samples/s; val %s", self.stage, entry["epoch"],
                         epochs, entry["loss"], entry["samples_per_s"], _summary(entry["val"]))
                if cfg.dataset == "body":
                    entry["val_parts"] = part_metrics(val_pred[-1], self.val)
                    for name, m in entry["val_parts"].items():
                        log.info("stage %d epoch %d/%d: val %s part: %s", self.stage, entry["epoch"], epochs, name,
                                 _summary(m))
                _save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "epoch": entry["epoch"], "step": step + 1,
                              "history": history,
                              "stats": stats, "config": net.config(), "val_metrics": final_metrics,
                              "train_config": cfg.to_dict(),
                              "rng": {"torch": torch.get_rng_state(),
                                      "cuda": torch.cuda.get_rng_state(self.device)
                                      if self.device.type == "cuda" else None}}, self.ckpt_path)
            _barrier()
            model.train()
            t0, seen, loss_sum = time.time(), 0, torch.zeros((), device=self.device)
        bar.close()
        net.eval()
        return net, {"history": history, "epochs": epochs, "val_metrics": final_metrics}, stats


def _setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _load_split(cfg: TrainConfig, split: str, limit: int | None, scaler: dict | None) -> TrainingData:
    from deeppose.tools.data.person_boxes import example_b0

    if cfg.dataset == "body":
        return _body_split(split, limit)
    ds = load_dataset(cfg.dataset, cfg.data, split)
    if limit:
        ds.examples = ds.examples[:limit]
    # Training may build b0 from the labelled eyes and nose where the face detector missed;
    # val never uses ground truth for b0 (the full frame, as at run time).
    b0, sources = example_b0(ds, scaler, missed="joints" if split == "train" else "frame")
    counts = {s: sources.count(s) for s in sorted(set(sources))}
    log.info("%s %s: %d persons, b0 sources %s", cfg.dataset, split, len(ds), counts)
    if split == "train" and cfg.extra_data:
        extra_scaler = scaler if cfg.dataset == "flic" else _run_time_scaler(cfg)
        if extra_scaler is None:
            raise DatasetError(f"--extra-data for an LSP model needs the full-body scaler at {cfg.out / 'scaler.json'} "
                               "(it places a body box b0 on the other dataset's faces): run `python main.py "
                               "fit-scaler --dataset lsp` first")
        for name in cfg.extra_data:
            extra, extra_b0, extra_sources = _extra_split(name, ds.skeleton, extra_scaler, limit)
            ds = dataclasses.replace(ds, name=f"{ds.name}+{name}", examples=ds.examples + extra.examples)
            b0 = np.concatenate([b0, extra_b0])
            sources = sources + [f"{name}:{s}" for s in extra_sources]
    return TrainingData(ds, b0, sources)


BODY_PARTS = ("flic", "lsp")
"""The datasets of psi v2's union skeleton ``body``, in the order their persons are concatenated."""


def _body_split(split: str, limit: int | None) -> TrainingData:
    """psi v2's ``body`` data: FLIC's and LSP's ``split`` relabelled into the union skeleton (each
    dataset labels its own joints; the others are NaN and out of the loss), with each dataset's
    own b0 protocol: FLIC's detected face through the shipped FLIC scaler (weights/flic), LSP's
    full image (the paper's). ``limit`` applies to each dataset. Sources are "flic:face",
    "lsp:frame" and so on, which tell the parts apart for their val figures.

    Raises:
        DatasetError: a dataset is missing, or the FLIC scaler is.
    """
    from deeppose.engine.constants import WEIGHTS_ROOT
    from deeppose.tools.data.person_boxes import example_b0

    skeleton = get_skeleton("body")
    scaler_path = WEIGHTS_ROOT / "flic" / "scaler.json"
    if not scaler_path.is_file():
        raise DatasetError(f"no FLIC face scaler at {scaler_path}: run `python main.py fit-scaler` first")
    scalers = {"flic": json.loads(scaler_path.read_text()), "lsp": None}
    examples, b0, sources, first = [], [], [], None
    for name in BODY_PARTS:
        ds = load_dataset(name, None, split)
        if limit:
            ds.examples = ds.examples[:limit]
        boxes, srcs = example_b0(ds, scalers[name], missed="joints" if split == "train" else "frame")
        log.info("%s %s: %d persons for body, b0 sources %s", name, split, len(ds), dict(Counter(srcs)))
        keep = np.isfinite(boxes).all(axis=1)
        examples += _relabel(ds, skeleton, name, keep)
        b0.append(boxes[keep])
        sources += [f"{name}:{s}" for s, k in zip(srcs, keep) if k]
        first = first or ds
    ds = dataclasses.replace(first, name="body", skeleton=skeleton, examples=examples)
    return TrainingData(ds, np.concatenate(b0), sources)


def _relabel(ds, skeleton, name: str, keep: np.ndarray) -> list:
    """The examples of ``ds`` whose ``keep`` is set, relabelled into ``skeleton`` by joint name:
    joints ``ds`` does not label are NaN (out of the loss) and not visible; groups get the
    prefix ``name:``."""
    idx = [ds.skeleton.joints.index(j) if j in ds.skeleton.joints else -1 for j in skeleton.joints]
    out = []
    for e, k in zip(ds.examples, keep):
        if k:
            pose = np.array([e.pose[i] if i >= 0 else (np.nan, np.nan) for i in idx], dtype=np.float64)
            vis = np.array([bool(e.visible[i]) if i >= 0 else False for i in idx])
            out.append(dataclasses.replace(e, pose=pose, visible=vis, group=f"{name}:{e.group}"))
    return out


def _extra_split(name: str, skeleton, scaler: dict, limit: int | None):
    """Another dataset's train split relabelled into ``skeleton``: the union of joints, where the
    joints it does not label are NaN and so out of the loss (as the paper trains on FLIC + LSP).

    b0 follows the model's run-time protocol, the detected face enlarged by the model's scaler:
    - LSP persons for the FLIC model: the face matched to the neck and head top, or the face
      they imply (:func:`tools.data.person_boxes.head_face_b0`);
    - FLIC persons for the LSP model (``scaler`` = the full-body scaler): the matched face, or
      the face implied by the labelled eyes and nose, enlarged to a body box that reaches below
      the frame where the legs are out of view (:func:`tools.data.person_boxes.example_b0`);

    Returns:
        (dataset with ``skeleton``, b0 (N, 4) pixels, sources (N,)); persons without a b0 are dropped.
    """
    from deeppose.tools.data.person_boxes import example_b0, head_face_b0

    other = load_dataset(name, None, "train")
    if limit:
        other.examples = other.examples[:limit]
    if name == "flic":
        b0, sources = example_b0(other, scaler, missed="joints")
        log.info("%s train: %d persons as extra data, b0 sources %s", name, len(other), dict(Counter(sources)))
    else:
        b0, sources, params = head_face_b0(other, scaler)
        log.info("%s train: %d persons as extra data, b0 sources %s, head-face fit %s", name, len(other),
                 dict(Counter(sources)), params)
    keep = np.isfinite(b0).all(axis=1)
    examples = _relabel(other, skeleton, name, keep)
    return (dataclasses.replace(other, skeleton=skeleton, examples=examples), b0[keep],
            [s for s, k in zip(sources, keep) if k])


def _run_time_scaler(cfg: TrainConfig) -> dict | None:
    """The scaler the manifest records for run time (video, app): FLIC's training one; for LSP
    the full-body scaler in ``--out``/scaler.json (``fit-scaler --dataset lsp``) when there is one,
    which training does not use (b0 is the full image there)."""
    if cfg.dataset == "flic":
        return _scaler(cfg)
    path = cfg.out / "scaler.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _scaler(cfg: TrainConfig) -> dict | None:
    """The scaler of training's b0: FLIC's from ``--out``/scaler.json; None for LSP."""
    if cfg.dataset != "flic":
        return None  # LSP: b0 is the full image (paper, Sec. 4.1)
    path = cfg.out / "scaler.json"
    if not path.is_file():
        raise DatasetError(f"no face scaler at {path}: run `python main.py fit-scaler` first")
    return json.loads(path.read_text())


def start_from(net: PoseRegressor | BackboneRegressor, checkpoint: Path) -> str:
    """Load a trained stage checkpoint into ``net`` (``--init``); see :func:`transfer_weights`.

    Raises:
        ModelError: unreadable checkpoint, or one of another preset (layers of other shapes).
    """
    return transfer_weights(net, load_stage_module(checkpoint).state_dict(), str(checkpoint))


def transfer_weights(net: PoseRegressor | BackboneRegressor, source: dict, name: str) -> str:
    """Start ``net`` from the state dict of a trained psi of the same preset.

    - Another number of joints (a FLIC model starting an LSP one): every layer but the
      2k-wide output layer, which keeps its fresh initialization.
    - Another input side S (a 220 stage starting a 96 refinement stage, a psi v2 stage 1
      trained at 160 pixels starting one at 224): the convolutions carry over as they are; the
      first fully connected layer, whose inputs are the C x s x s cells of the last (for psi v2:
      the reduced) feature map, is resampled from the source's s' x s' grid to s x s by area
      averaging (a larger grid repeats cells), scaled by s'^2 / s^2 so that a uniform feature
      map gives the same output.

    Returns a short description of what was carried over.
    Raises:
        ModelError: ``source`` is not psi with ``net``'s preset (layers of other shapes).
    """
    own = net.state_dict()
    same = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    last = f"head.{len(net.head) - 1}"
    if isinstance(net, BackboneRegressor):   # Flatten, Dropout, F; cin: channels of the reduced map
        fc1, cin = "head.2.weight", BACKBONE_PRESETS[net.preset].reduce
    else:                                    # Flatten, F; cin: channels of the last feature map
        fc1, cin = "head.1.weight", PRESETS[net.preset].conv345[-1]
    notes = []
    if fc1 in source and fc1 in own and fc1 not in same:
        w = source[fc1]
        s_src, s_dst = math.isqrt(w.shape[1] // cin), math.isqrt(own[fc1].shape[1] // cin)
        if s_src * s_src * cin == w.shape[1] and w.shape[0] == own[fc1].shape[0]:
            grid = w.reshape(w.shape[0], cin, s_src, s_src)
            r = _area_weights(s_src, s_dst).to(grid.dtype) * (s_src / s_dst)   # (s_dst, s_src), per axis
            same[fc1] = torch.einsum("ai,ocij,bj->ocab", r, grid, r).reshape(own[fc1].shape)
            notes.append(f"first F layer resampled from {s_src}x{s_src} to {s_dst}x{s_dst} cells")
    if set(own) - set(same) - {f"{last}.weight", f"{last}.bias"}:
        raise ModelError(f"{name} is not psi with preset {net.preset!r}: cannot start from it")
    if f"{last}.weight" not in same:
        notes.append("features only: it regresses another number of joints; the output layer starts afresh")
    net.load_state_dict(same, strict=False)
    return "; ".join(notes) or "every layer"


def _area_weights(n_src: int, n_dst: int) -> torch.Tensor:
    """(n_dst, n_src) area-averaging weights along one axis: row i holds the overlap of cell i of
    an n_dst-cell grid with each cell of an n_src-cell grid over the same span, divided by cell
    i's length, so each row sums to 1 and each column to n_dst / n_src (exact for any sizes)."""
    edges_src = np.arange(n_src + 1) / n_src
    edges_dst = np.arange(n_dst + 1) / n_dst
    lo = np.maximum(edges_dst[:-1, None], edges_src[None, :-1])
    hi = np.minimum(edges_dst[1:, None], edges_src[None, 1:])
    return torch.from_numpy(np.clip(hi - lo, 0, None) * n_dst)


def _init_checkpoint(cfg: TrainConfig, stage: int) -> Path | None:
    """Stage ``stage``'s checkpoint in the ``cfg.init`` model folder, None without --init or such a stage."""
    if cfg.init is None:
        return None
    files = read_manifest(cfg.init).stage_files
    return files[stage - 1] if len(files) >= stage else None


def _prev_stages(cfg: TrainConfig, stage: int, k: int) -> tuple[list[PoseRegressor], list, list]:
    """Stages 1..stage-1 of the model in ``cfg.out``: their networks, the joints each refines
    (``ModelInfo.stage_joints``) and its followers (``ModelInfo.stage_follow``). Raises
    ModelError when the folder has fewer stages."""
    if stage == 1:
        return [], [], []
    info = read_manifest(cfg.out)
    files = info.stage_files
    if len(files) < stage - 1:
        raise ModelError(f"stage {stage} needs stages 1..{stage - 1} in {cfg.out}; it has {len(files)}")
    return ([load_stage_module(f, k) for f in files[: stage - 1]], info.stage_joints[: stage - 1],
            info.stage_follow[: stage - 1])


def _write_stage(cfg: TrainConfig, stage: int, net: PoseRegressor, result: dict, stats: dict | None,
                 val: dict, train: TrainingData, valdata: TrainingData, scaler: dict | None) -> None:
    """Store the stage (fp16) in the model folder and update the manifest; later stages are dropped."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    name = f"stage{stage}.pt"
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    _save_atomic({"config": net.config(), "state_dict": state, "stage": stage}, cfg.out / name)
    try:
        manifest = read_manifest(cfg.out).manifest.to_dict()
    except ModelError:
        manifest = {}
    stages = [s for s in manifest.get("stages", []) if s["stage"] < stage]
    entry = {"stage": stage, "checkpoint": name, "epochs": result["epochs"],
             **({"input_size": net.input_size} if net.input_size != INPUT_SIZE else {}),
             **({"joints": list(cfg.refine_joints)} if stage > 1 and cfg.refine_joints is not None else {}),
             **({"follow": dict(cfg.refine_follow)} if stage > 1 and cfg.refine_follow else {}),
             "final_train_loss": round(result["history"][-1]["loss"], 5) if result["history"] else None,
             "samples_per_s": round(result["history"][-1]["samples_per_s"], 1) if result["history"] else None}
    if stats is not None:
        entry["displacement_prior"] = {"mean": np.round(stats["mean"], 4).tolist(),
                                       "cov": np.round(stats["cov"], 5).tolist()}
    stages.append(entry)
    skeleton = train.ds.skeleton
    for stale in ("val_metrics", "val_protocol"):   # written below, together (record_val_metrics)
        manifest.pop(stale, None)
    manifest.update({
        "name": cfg.dataset,
        "skeleton": skeleton.to_dict(),
        "sigma": cfg.sigma,
        "input_size": INPUT_SIZE,
        "normalization": {"mean": [PIXEL_MEAN] * 3, "std": [PIXEL_STD] * 3, "channel_order": "BGR",
                          "coordinates": "N(y; b) = (y - b_c) / (b_w, b_h)"},
        "preset": cfg.preset,
        "stages": stages,
        "scaler": scaler,
        "training": {"dataset": cfg.dataset, "train_split": "train", "train_persons": len(train),
                     "val_split": "val", "val_persons": len(valdata), "seed": cfg.seed,
                     "b0": {"train": dict(Counter(train.sources)), "val": dict(Counter(valdata.sources))},
                     "config": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "out", "run_dir", "resume")}},
    })
    write_manifest(cfg.out, manifest)
    # ``val`` holds every stage 1..stage, measured now with this stage's cascade.
    record_val_metrics(cfg.out, val, {
        "command": "main.py train", "split": "val", "examples": len(valdata),
        "b0_sources": dict(Counter(valdata.sources)), "backend": "torch", "flip": "off"})


def _export_onnx(folder: Path) -> None:
    """Write the ONNX files of the model folder's stages and name them in its manifest
    (:func:`tools.export.export_onnx.export_model`; stages whose file is up to date are skipped), so
    that the runtime backends, which load prebuilt files and never export, can run the folder
    as training leaves it. A failure is logged, not fatal: the checkpoints are written, and
    ``main.py export-onnx`` can finish the job."""
    from deeppose.tools.export.export_onnx import export_model

    try:
        paths = export_model(folder)
    except Exception as e:   # ImportError (no onnx), BackendError, ModelError, OSError: keep the training
        log.warning("ONNX export failed (%s); run: python main.py export-onnx --weights %s", e, folder)
        return
    log.info("ONNX files: %s", ", ".join(p.name for p in paths))


def _init_distributed(cfg: TrainConfig) -> torch.device:
    """The training device; under torchrun (WORLD_SIZE > 1) also joins the process group:
    NCCL with one GPU per process (LOCAL_RANK) on CUDA, gloo on CPUs."""
    cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        if world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
        else:
            local = int(cfg.device.split(":")[1]) if ":" in cfg.device else 0
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu" if cfg.device == "auto" else cfg.device)


def train_cascade(cfg: TrainConfig) -> int:
    """Train ``cfg.stages`` in order; returns a process exit code.

    Run as one process, or under ``torchrun --nproc_per_node N`` (DistributedDataParallel:
    NCCL on GPUs, gloo on CPUs): every process loads the data and takes every N-th batch;
    process 0 validates, logs and writes checkpoints and the model folder.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _init_distributed(cfg)
    rank, world = _dist()
    if rank == 0:
        _setup_logging(cfg.run_dir)
    else:
        log.setLevel(logging.WARNING)
    try:
        return _train_stages(cfg, device, rank, world)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _train_stages(cfg: TrainConfig, device: torch.device, rank: int, world: int) -> int:
    log.info("training %s stages %s on %s (%d process(es), %d threads each), preset %s, sigma %.1f, loss %s",
             cfg.dataset, cfg.stages, device, world, torch.get_num_threads(), cfg.preset, cfg.sigma, cfg.loss)
    try:
        scaler = _scaler(cfg)
        train = _load_split(cfg, "train", cfg.limit, scaler)
        val = _load_split(cfg, "val", cfg.val_limit, scaler)
    except (DatasetError, ModelError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    for stage in cfg.stages:
        try:
            prev, prev_joints, prev_follow = _prev_stages(cfg, stage, train.ds.skeleton.k)
            prev = [n.to(device) for n in prev]
        except ModelError as e:
            print(f"train: {e}", file=sys.stderr)
            return 2
        trainer = StageTrainer(stage, cfg, train, val, prev, device, prev_joints, prev_follow)
        try:
            net, result, stats = trainer.run()
        except (DatasetError, ModelError) as e:
            print(f"train: {e}", file=sys.stderr)
            return 2
        if rank == 0:
            final = result["val_metrics"]
            _write_stage(cfg, stage, net.cpu(), result, stats, final, train, val, _run_time_scaler(cfg))
            log.info("stage %d written to %s; val %s", stage, cfg.out, _summary(final[f"stage{stage}"]))
            _export_onnx(cfg.out)
        _barrier()  # the next stage reads this one from the model folder
    return 0
