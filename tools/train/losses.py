"""The training losses: the paper's L2 over labelled joints (Eq. 4), L1 and smooth L1, and psi v2's
Laplace negative log-likelihood with its presence term."""
from __future__ import annotations

import math

import torch

from deeppose.tools.train.config import TrainConfig
from deeppose.tools.train.sampling import Batch


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
