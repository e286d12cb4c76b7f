"""Training batches: crops and normalized targets with augmentation, for stage 1 around b0 and for
stages s >= 2 around simulated predictions of stage s-1 (Eq. 8), drawn from the displacement
distribution fitted on the training split; one epoch's items and the per-step batches."""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch

from deeppose.engine.geometry import INPUT_SIZE, PIXEL_MEAN, PIXEL_STD, crop_boxes, diam
from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.splits import TrainingData


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

    def _edge_cut(self, image: np.ndarray, i: int) -> np.ndarray:
        """Person i's (H, W, 3) image with the frame's edge moved onto him, as users film themselves
        with the head, the feet or one side out of the frame: everything past a line through the
        person, 5 to 40% of his labelled joints' extent in from one side (the top half the time, as
        a head out of the frame), set to black, as the run time's crops show what lies past the
        frame (:func:`engine.geometry.crop_boxes`). The joints past the line stay in the loss: the
        network learns where they are from the rest of the body, and its Laplace scale how sure it
        can be. The extent counts every labelled joint, also one labelled outside the frame. A copy
        (the image itself is left as it is), or the image itself for a person with fewer than two
        labelled joints."""
        pose = self.data.poses[i]
        pose = pose[np.isfinite(pose).all(1)]
        if len(pose) < 2:
            return image
        side = self.rng.choice(4, p=[0.5, 1 / 6, 1 / 6, 1 / 6])   # top, bottom, left, right
        axis = 1 if side < 2 else 0
        lo, hi = pose[:, axis].min(), pose[:, axis].max()
        depth = self.rng.uniform(0.05, 0.4) * (hi - lo)
        limit = image.shape[0] if axis else image.shape[1]
        at = int(np.clip(round(lo + depth if side % 2 == 0 else hi - depth), 0, limit))
        out = image.copy()
        if side == 0:
            out[:at] = 0
        elif side == 1:
            out[at:] = 0
        elif side == 2:
            out[:, :at] = 0
        else:
            out[:, at:] = 0
        return out

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
        (:meth:`_negative_box`; presence 0, no joint in the loss), and an ``edge_cut`` fraction of
        the persons is cut by the frame's edge (:meth:`_edge_cut`)."""
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
            image = self.data.image(i)
            if presence[j] and c.edge_cut and self.rng.random() < c.edge_cut:
                image = self._edge_cut(image, i)
            self._crop(crops, j, image, box, angle, flips[j])
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


def epoch_items(stage: int, train: TrainingData, joints: list[int] | None, rng: np.random.Generator,
                repeat: dict[str, int] | None = None) -> np.ndarray:
    """One epoch's training items in a random order: stage 1, the person indices (sum of
    :func:`person_repeats`,) int, N without ``repeat``; a stage s >= 2, the (person, joint) index
    pairs (M, 2) int of every labelled joint it refines (``joints``: joint indices; None: all),
    each pair one simulated box per epoch (Eq. 8), repeated with its person.

    ``repeat`` ({dataset: n}, ``--repeat``): each person of that dataset (by the prefix of his
    b0 source, e.g. "lsp:frame") comes n times an epoch, each time with fresh augmentation."""
    times = person_repeats(train, repeat)
    if stage == 1:
        return rng.permutation(np.repeat(np.arange(len(train)), times))
    labelled = np.isfinite(train.poses).all(-1) & np.isfinite(train.diam)[:, None]
    if joints is not None:   # only the joints this stage refines
        keep = np.zeros(labelled.shape[1], bool)
        keep[joints] = True
        labelled &= keep
    pairs = np.argwhere(labelled)
    pairs = np.repeat(pairs, times[pairs[:, 0]], axis=0)
    return pairs[rng.permutation(len(pairs))]


def person_repeats(train: TrainingData, repeat: dict[str, int] | None) -> np.ndarray:
    """How many times each training person comes an epoch, (N,) int >= 1: ``repeat[d]`` for the
    persons whose b0 source is "d:..." (another dataset's, in ``--dataset body`` or
    ``--extra-data``) or, without a prefix, the run's own dataset ``train.ds.name``; 1 otherwise."""
    times = np.ones(len(train), dtype=np.int64)
    for i, source in enumerate(train.sources):
        dataset = source.split(":", 1)[0] if ":" in source else train.ds.name.split("+", 1)[0]
        times[i] = (repeat or {}).get(dataset, 1)
    return times


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
            self._items = epoch_items(self.stage, self.maker.data, self.joints, order, self.maker.cfg.repeat)
            self._epoch = epoch
        first = (b * self.world + self.rank) * bs
        self.maker.rng = np.random.default_rng([seed, self.stage, self.rank, g])
        batch = self._items[first:first + bs]
        return self.maker.stage1(batch) if self.stage == 1 else self.maker.refine(batch, self.stats)


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
