"""Evaluation metrics of the paper (Sec. 4.1): PCP per limb and PDJ per joint.

Both take predicted and ground-truth pose vectors of shape (N, k, 2) in pixels (the project's
convention: x right, y down, (0, 0) the centre of the top-left pixel; NaN = unlabelled).

- **PCP**, Percentage of Correct Parts: a limb is correct when *both* predicted end points lie
  within ``threshold`` (0.5 in the paper) times the ground-truth limb length of the true end
  points. A limb end point is the mean of the joints the skeleton lists for it
  (:class:`engine.skeletons.Limb`).
- **PDJ**, Percent of Detected Joints: a joint is detected when its predicted position lies
  within ``fraction`` times the torso diameter diam(y) of the ground truth
  (:func:`engine.geometry.diam`, shoulder to opposite hip) of its true position. PDJ is
  reported for a range of fractions (the paper's curves span [0, 0.5]) and at 0.2.

Exclusions: a ground-truth limb whose end points are not all labelled is left out of that
limb's count, and so is a ground-truth joint that is unlabelled or belongs to an example whose
diam is NaN. A NaN *prediction* is never excluded: it counts as wrong (an estimator that gives
up loses the point). Fractions over an empty count are NaN.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from deeppose.engine.geometry import diam
from deeppose.engine.skeletons import Skeleton

PCP_THRESHOLD = 0.5
# The PDJ curve of stage_metrics: CURVE_POINTS evenly spaced fractions in [0, CURVE_MAX].
CURVE_MAX = 0.5
CURVE_POINTS = 51
"""The paper's PCP threshold: half the ground-truth limb length."""

PDJ_FRACTIONS = (0.1, 0.2)
"""PDJ fractions of diam reported as single numbers (the paper quotes PDJ@0.2)."""


def _check_poses(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (N, k, 2); a single pose (k, 2) becomes N = 1. Raises ValueError otherwise."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    pred = pred[None] if pred.ndim == 2 else pred
    gt = gt[None] if gt.ndim == 2 else gt
    if pred.ndim != 3 or pred.shape[1:] != (skeleton.k, 2) or gt.shape != pred.shape:
        raise ValueError(f"expected pred and gt of shape (N, {skeleton.k}, 2) for {skeleton.name}, "
                         f"got {pred.shape} and {gt.shape}")
    return pred, gt


def _fraction(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(x: np.ndarray, axis=None):
    """Mean ignoring NaN, NaN (no warning) when everything is NaN."""
    x = np.asarray(x, dtype=np.float64)
    n = np.isfinite(x).sum(axis=axis)
    s = np.where(np.isfinite(x), x, 0.0).sum(axis=axis)
    return _fraction(s, n) if np.ndim(s) else float(_fraction(s, n))


def part_name(name: str) -> str:
    """Name of a joint or limb with its side removed: ``"l_elbow"`` and ``"r_elbow"`` -> ``"elbow"``."""
    return re.sub(r"^[lr]_", "", name)


def _parts(names: tuple[str, ...]) -> dict[str, list[int]]:
    """Group indices of left/right partners under one part name, in first-seen order."""
    out: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        out.setdefault(part_name(n), []).append(i)
    return out


# --------------------------------------------------------------------------------------- PCP

def limb_end_points(pose: np.ndarray, skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """End points of every PCP limb of ``skeleton``.

    Args:
        pose: (N, k, 2) pose vectors in pixels, NaN = unlabelled.
    Returns:
        (a, b): two (N, L, 2) arrays of end points in pixels, L = len(skeleton.limbs); an end
        point is the mean of its listed joints, NaN when any of them is unlabelled.
    """
    pose = np.asarray(pose, dtype=np.float64)
    a = np.stack([pose[..., list(limb.a), :].mean(axis=-2) for limb in skeleton.limbs], axis=-2)
    b = np.stack([pose[..., list(limb.b), :].mean(axis=-2) for limb in skeleton.limbs], axis=-2)
    return a, b


def pcp_correct(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton,
                threshold: float = PCP_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Per-example PCP decisions.

    A limb is correct when ``|a_pred - a_gt| <= threshold * |b_gt - a_gt|`` and
    ``|b_pred - b_gt| <= threshold * |b_gt - a_gt|`` (both end points, Sec. 4.1).

    Args:
        pred: (N, k, 2) predicted poses, pixels.
        gt: (N, k, 2) ground-truth poses, pixels, NaN = unlabelled.
        threshold: fraction of the ground-truth limb length.
    Returns:
        (correct, valid): (N, L) bool arrays. ``valid`` is False where a ground-truth end point
        is unlabelled; ``correct`` is False wherever ``valid`` is False.
    Raises:
        ValueError: on shapes other than (N, k, 2).
    """
    pred, gt = _check_poses(pred, gt, skeleton)
    pa, pb = limb_end_points(pred, skeleton)
    ga, gb = limb_end_points(gt, skeleton)
    length = np.linalg.norm(gb - ga, axis=-1)                     # (N, L)
    valid = np.isfinite(length)
    da = np.linalg.norm(pa - ga, axis=-1)
    db = np.linalg.norm(pb - gb, axis=-1)
    with np.errstate(invalid="ignore"):
        correct = valid & (da <= threshold * length) & (db <= threshold * length)  # NaN pred -> False
    return correct, valid


@dataclass
class PCPResult:
    """PCP of one estimator on one set of examples.

    Attributes:
        limbs: L limb names (skeleton order).
        threshold: fraction of the ground-truth limb length (0.5 in the paper).
        correct: (L,) number of examples whose limb was correct.
        counts: (L,) number of examples whose ground-truth limb is labelled.
        per_limb: (L,) correct / counts; NaN where counts is 0.
        mean: mean of ``per_limb`` over the limbs with a count (the paper's average).
    """

    limbs: tuple[str, ...]
    threshold: float
    correct: np.ndarray
    counts: np.ndarray
    per_limb: np.ndarray
    mean: float

    def per_part(self) -> dict[str, float]:
        """PCP pooled over left and right limbs ("upper_arm", "lower_arm", ... as in Table 1)."""
        return {name: float(_fraction(self.correct[idx].sum(), self.counts[idx].sum()))
                for name, idx in _parts(self.limbs).items()}

    def to_dict(self) -> dict:
        """JSON-able summary (NaN stays float NaN; see tools.eval.evaluate for JSON writing)."""
        return {
            "threshold": self.threshold,
            "per_limb": dict(zip(self.limbs, map(float, self.per_limb))),
            "per_part": self.per_part(),
            "mean": self.mean,
            "correct": dict(zip(self.limbs, map(int, self.correct))),
            "counts": dict(zip(self.limbs, map(int, self.counts))),
        }


def pcp(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton, threshold: float = PCP_THRESHOLD) -> PCPResult:
    """Percentage of Correct Parts per limb (Sec. 4.1; see :func:`pcp_correct`).

    Args:
        pred: (N, k, 2) predicted poses in pixels (NaN counts as wrong).
        gt: (N, k, 2) ground-truth poses in pixels (limbs with an unlabelled end are excluded).
        skeleton: gives the limbs (``skeleton.limbs``).
        threshold: fraction of the ground-truth limb length, 0.5 in the paper.
    Returns:
        A :class:`PCPResult` with per-limb fractions in [0, 1], their mean and the counts.
    """
    correct, valid = pcp_correct(pred, gt, skeleton, threshold)
    n_correct = correct.sum(axis=0)
    counts = valid.sum(axis=0)
    per_limb = _fraction(n_correct, counts)
    return PCPResult(tuple(l.name for l in skeleton.limbs), float(threshold), n_correct, counts, per_limb,
                     _nanmean(per_limb))


# --------------------------------------------------------------------------------------- PDJ

def pdj_distances(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Distance of every predicted joint to its ground truth, in units of diam(gt).

    Args:
        pred: (N, k, 2) predicted poses, pixels.
        gt: (N, k, 2) ground-truth poses, pixels, NaN = unlabelled.
    Returns:
        (N, k) float64: ``|pred_i - gt_i| / diam(gt)``; NaN where the joint is excluded
        (unlabelled in gt, or diam(gt) NaN), +inf where the prediction is NaN (never detected).
    """
    pred, gt = _check_poses(pred, gt, skeleton)
    d = diam(gt, skeleton)                                           # (N,)
    valid = np.isfinite(gt).all(axis=-1) & np.isfinite(d)[:, None]  # (N, k)
    dist = np.linalg.norm(pred - gt, axis=-1)
    pred_ok = np.isfinite(pred).all(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = dist / d[:, None]                                      # x/0 -> inf on a zero diam
    rel = np.where(pred_ok, rel, np.inf)                             # NaN prediction: never detected
    rel = np.where(pred_ok & (dist == 0), 0.0, rel)                  # exact hit, even on a zero diam
    rel[~valid] = np.nan
    return rel


@dataclass
class PDJResult:
    """PDJ of one estimator at one or more fractions of diam.

    Attributes:
        joints: k joint names (skeleton order).
        fractions: (F,) fractions of diam(gt).
        detected: (F, k) number of examples whose joint was detected at each fraction.
        counts: (k,) number of examples scored per joint (labelled, with a finite diam).
        per_joint: (F, k) detected / counts, NaN where counts is 0.
        mean: (F,) mean of ``per_joint`` over joints with a count.
    """

    joints: tuple[str, ...]
    fractions: np.ndarray
    detected: np.ndarray
    counts: np.ndarray
    per_joint: np.ndarray
    mean: np.ndarray

    def at(self, fraction: float) -> np.ndarray:
        """(k,) per-joint PDJ at ``fraction`` (must be one of :attr:`fractions`, within 1e-9)."""
        return self.per_joint[self._row(fraction)]

    def mean_at(self, fraction: float) -> float:
        """Mean PDJ over the joints at ``fraction``."""
        return float(self.mean[self._row(fraction)])

    def _row(self, fraction: float) -> int:
        hits = np.flatnonzero(np.abs(self.fractions - fraction) < 1e-9)
        if not len(hits):
            raise KeyError(f"PDJ was not computed at {fraction}; fractions are {self.fractions.tolist()}")
        return int(hits[0])

    def per_part_at(self, fraction: float) -> dict[str, float]:
        """PDJ pooled over left and right joints at ``fraction``, per part."""
        row = self._row(fraction)
        return {name: float(v[row]) for name, v in self.per_part().items()}

    def per_part(self) -> dict[str, np.ndarray]:
        """(F,) PDJ pooled over left and right joints ("elbow", "wrist", ...), per part."""
        return {name: _fraction(self.detected[:, idx].sum(axis=1), self.counts[idx].sum())
                for name, idx in _parts(self.joints).items()}

    def to_dict(self) -> dict:
        """JSON-able: fractions, per-joint and per-part lists over fractions, mean, counts."""
        return {
            "fractions": [float(f) for f in self.fractions],
            "per_joint": {j: self.per_joint[:, i].tolist() for i, j in enumerate(self.joints)},
            "per_part": {p: v.tolist() for p, v in self.per_part().items()},
            "mean": self.mean.tolist(),
            "counts": dict(zip(self.joints, map(int, self.counts))),
        }


def pdj(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton, fractions=PDJ_FRACTIONS) -> PDJResult:
    """Percent of Detected Joints (Sec. 4.1) at each of ``fractions``.

    A joint is detected when ``|pred_i - gt_i| <= fraction * diam(gt)`` ("within a fraction of
    the torso diameter"; the boundary counts as detected, so a perfect estimate scores 1 even
    at fraction 0). diam is the distance from a shoulder to the opposite hip of the ground
    truth (:func:`engine.geometry.diam`).

    Args:
        pred: (N, k, 2) predicted poses in pixels (NaN counts as not detected).
        gt: (N, k, 2) ground-truth poses in pixels; unlabelled joints and examples whose diam is
            NaN are excluded.
        skeleton: the dataset's skeleton (joint names, diam pairs).
        fractions: scalar or (F,) fractions of diam.
    Returns:
        A :class:`PDJResult`; ``per_joint`` is (F, k) in [0, 1].
    """
    fractions = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    rel = pdj_distances(pred, gt, skeleton)                          # (N, k)
    valid = ~np.isnan(rel)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore"):
        detected = (rel[None] <= fractions[:, None, None] + 1e-12).sum(axis=1)  # NaN compares False
    per_joint = _fraction(detected, counts[None])
    return PDJResult(tuple(skeleton.joints), fractions, detected, counts, per_joint, _nanmean(per_joint, axis=1))


def pdj_curve(pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton, max_fraction: float = 0.5,
              num: int = 51) -> PDJResult:
    """PDJ over ``num`` evenly spaced fractions of diam in [0, ``max_fraction``] (the paper's plots).

    See :func:`pdj`; the default gives fractions 0, 0.01, ..., 0.5.
    """
    return pdj(pred, gt, skeleton, np.linspace(0.0, max_fraction, num))


# --------------------------------------------------------------------------- one stage, and the manifest's val_metrics

def stage_metrics(pred, gt, skeleton, pcp_threshold: float = 0.5) -> dict:
    """All numbers for one stage's poses: PDJ@0.1, PDJ@0.2, the PDJ curve and PCP.

    Args:
        pred, gt: (N, k, 2) poses in pixels.
    Returns:
        JSON-able dict (NaN where a count is 0) with keys "pdj@0.1", "pdj@0.2" (per_joint,
        per_part, mean), "pdj_counts", "pdj_curve" (see PDJResult.to_dict) and "pcp"
        (see PCPResult.to_dict).
    """
    curve = pdj_curve(pred, gt, skeleton, CURVE_MAX, CURVE_POINTS)
    out: dict = {}
    for f in PDJ_FRACTIONS:
        out[f"pdj@{f:g}"] = {
            "per_joint": dict(zip(skeleton.joints, map(float, curve.at(f)))),
            "per_part": curve.per_part_at(f),
            "mean": curve.mean_at(f),
        }
    out["pdj_counts"] = dict(zip(skeleton.joints, map(int, curve.counts)))
    out["pdj_curve"] = curve.to_dict()
    out["pcp"] = pcp(pred, gt, skeleton, pcp_threshold).to_dict()
    return out


def val_metrics_entry(stage: dict) -> dict:
    """The model manifest's ``val_metrics`` entry of one stage, from :func:`stage_metrics`'s
    result: PDJ@0.1 and PDJ@0.2 per joint with their mean, PCP per limb with its mean, rounded
    to 4 decimals; None where a count is 0."""
    def r(v):
        v = float(v)
        return round(v, 4) if np.isfinite(v) else None

    entry = {}
    for key in ("pdj@0.1", "pdj@0.2"):
        entry[key] = {j: r(v) for j, v in stage[key]["per_joint"].items()} | {"mean": r(stage[key]["mean"])}
    entry["pcp"] = {limb: r(v) for limb, v in stage["pcp"]["per_limb"].items()} | {"mean": r(stage["pcp"]["mean"])}
    return entry


FOUR_LIMBS = ("upper_arm", "lower_arm", "upper_leg", "lower_leg")
"""The limbs of the paper's LSP table (Table 1), whose mean is the full-body model's headline PCP."""


def four_limb_pcp(pcp_per_limb: dict) -> dict | None:
    """PCP of the paper's four limbs, left and right averaged, and their "mean_of_four", from a
    per-limb PCP dict (a manifest's ``val_metrics`` "pcp" entry: "l_upper_arm", ... 0..1);
    None when a limb is missing (an upper-body skeleton) or has no count."""
    out = {}
    for part in FOUR_LIMBS:
        values = [pcp_per_limb.get(f"{side}_{part}") for side in "lr"]
        if any(v is None or not np.isfinite(v) for v in values):
            return None
        out[part] = float(np.mean(values))
    out["mean_of_four"] = float(np.mean([out[p] for p in FOUR_LIMBS]))
    return out


def record_val_metrics(folder, metrics: dict, protocol: dict, int8_stages: list[int] | None = None):
    """Write a model's validation metrics into its manifest: ``val_metrics`` (per stage
    "stage1".."stageS", entries of :func:`val_metrics_entry`) replaced as a whole, and
    ``val_protocol`` (how they were measured: command, split, examples, b0 sources, backend,
    ...) with them, so that the two never disagree. The one writer of both, for ``train`` and
    ``evaluate --write-manifest``; with ``int8_stages`` (measured with those stages' int8
    copies) they go to the int8 record instead, ``"int8": {"stages", "val_metrics",
    "val_protocol"}`` (:func:`engine.backends.onnxruntime_backend.int8_record`).

    Args:
        folder: the model folder (its manifest.json must exist).
        metrics: {"stage<i>": entry}.
        protocol: JSON-able dict.
        int8_stages: 1-based stages that ran in int8, or None (the float model).
    Returns:
        The manifest's path.
    Raises:
        engine.model.ModelError: no readable manifest.
    """
    from deeppose.engine.model import read_manifest, write_manifest

    manifest = read_manifest(folder).manifest.to_dict()
    if int8_stages is None:
        manifest["val_metrics"] = metrics
        manifest["val_protocol"] = protocol
    else:
        manifest["int8"] = {"stages": list(int8_stages), "val_metrics": metrics, "val_protocol": protocol}
    manifest.pop("format", None)
    return write_manifest(folder, manifest)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count a half), by the Mann-Whitney rank statistic.

    Args:
        scores: (N,) floats; labels: (N,) bool, True for positives. NaN scores are left out.
    Returns:
        The AUROC in [0, 1]; NaN when either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    keep = np.isfinite(scores)
    scores, labels = scores[keep], labels[keep]
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks (1-based) over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def confidence_auroc(confidence: np.ndarray, pred: np.ndarray, gt: np.ndarray, skeleton: Skeleton,
                     fraction: float = 0.2) -> float:
    """How well per-joint confidences tell right joints from wrong ones: the AUROC of
    ``confidence`` (N, k) for "the joint is detected at PDJ@``fraction``" over the labelled
    joints of poses ``pred`` (N, k, 2) against ``gt`` (N, k, 2) pixels. NaN without confidences."""
    dist = pdj_distances(pred, gt, skeleton)   # (N, k) in diam units, NaN where unlabelled
    keep = ~np.isnan(dist) & np.isfinite(confidence)   # +inf (no prediction) counts as wrong
    return auroc(np.asarray(confidence)[keep], dist[keep] <= fraction)
