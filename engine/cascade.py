"""The DeepPose cascade (Sec. 3.2): stage 1 on the person box b0, refinement stages on joint boxes.

The cascade is written once against :class:`engine.backends.base.Regressor`, so that the PyTorch, ONNX Runtime and
TensorRT backends plug in unchanged. Every stage runs all of its crops (all persons, and at
stages s >= 2 the joints the stage refines, all k unless the model names fewer, of every
person) in ONE batch, at the stage's own crop side.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

from .constants import FLIP_MODES
from .geometry import INPUT_SIZE, crop_boxes, denormalize, diam, joint_boxes, to_network_input
from .skeletons import Skeleton


class StageRegressor(Protocol):
    """What the cascade needs of one stage's regressor: ``regress(crops (B, 3, S, S) float32)
    -> (B, 2k)`` normalized pose vectors (psi v2: ``(B, 3k + 1)``). Every backend's
    :class:`engine.backends.base.Regressor` is one; the cascade does not import the backends."""

    def regress(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass
class CascadeResult:
    """Poses of every stage for the P persons of one frame.

    Attributes:
        b0: (P, 4) person boxes (cx, cy, w, h), pixels.
        stage_poses: (S, P, k, 2) pose of each stage in pixels; ``stage_poses[-1]`` is final.
        stage_boxes: (S-1, P, k, 4) the joint boxes of stage s >= 2 (Eq. 7), pixels; NaN for
            the joints a stage does not refine (``Cascade.stage_joints``).
        stage_seconds: wall time of each stage (crop + regress + update), seconds.
        joint_scale: (P, k) the Laplace scale of each final joint's error, pixels, from the
            last stage that has a scale head (psi v2); NaN for a model without one.
        confidence: (P, k) in [0, 1], the probability under that Laplace distribution that the
            joint lies within PDJ@0.2 (0.2 diam of the final pose, per coordinate; see
            :func:`joint_confidence`); NaN without a scale head. A joint refined by a stage with a
            scale head is right only if the stage before put it in its joint box: its confidence
            is also multiplied by that stage's probability of an error within half the box side.
        presence: (P,) in [0, 1], stage 1's probability that b0 holds a person (psi v2's
            presence head); NaN without one.
    """

    b0: np.ndarray
    stage_poses: np.ndarray
    stage_boxes: np.ndarray
    stage_seconds: list[float] = field(default_factory=list)
    joint_scale: np.ndarray | None = None
    confidence: np.ndarray | None = None
    presence: np.ndarray | None = None

    def __post_init__(self):
        p, k = self.stage_poses.shape[1:3]
        if self.joint_scale is None:
            self.joint_scale = np.full((p, k), np.nan)
        if self.confidence is None:
            self.confidence = np.full((p, k), np.nan)
        if self.presence is None:
            self.presence = np.full(p, np.nan)

    def take(self, i: int, other: "CascadeResult", j: int) -> None:
        """Replace person ``i``'s estimate (b0, every stage's pose and joint boxes, scales,
        confidences, presence) by person ``j``'s of ``other``, in place.

        Raises:
            ValueError: ``other`` ran another number of stages or joints.
        """
        if other.stage_poses.shape[0] != self.stage_poses.shape[0] or other.stage_poses.shape[2:] != self.stage_poses.shape[2:]:
            raise ValueError(f"cannot take a person of a {other.stage_poses.shape[0]}-stage result into a "
                             f"{self.stage_poses.shape[0]}-stage one")
        self.b0[i] = other.b0[j]
        self.stage_poses[:, i] = other.stage_poses[:, j]
        self.stage_boxes[:, i] = other.stage_boxes[:, j]
        self.joint_scale[i] = other.joint_scale[j]
        self.confidence[i] = other.confidence[j]
        self.presence[i] = other.presence[j]

    @property
    def poses(self) -> np.ndarray:
        """(P, k, 2) final poses in pixels."""
        return self.stage_poses[-1]

    @property
    def num_stages(self) -> int:
        return self.stage_poses.shape[0]


CONFIDENCE_PDJ = 0.2
"""The PDJ fraction of diam within which :func:`joint_confidence` gives a joint's probability."""


def joint_confidence(joint_scale: np.ndarray, diam_px: np.ndarray, fraction: float = CONFIDENCE_PDJ) -> np.ndarray:
    """A joint's confidence from psi v2's Laplace scale: the probability that both coordinates
    of its error lie within ``fraction`` diam, (1 - exp(-t / b))^2 with t = fraction * diam and
    b the scale (a Laplace variable |e| <= t with probability 1 - exp(-t / b)).

    Args:
        joint_scale: (P, k) Laplace scales b, pixels (NaN: unknown).
        diam_px: (P,) torso diameters diam(y) of the poses, pixels.
    Returns:
        (P, k) in [0, 1]; NaN where the scale or diam is unknown.
    """
    t = fraction * np.asarray(diam_px, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (1.0 - np.exp(-t / joint_scale)) ** 2


class Cascade:
    """The cascade of S stages of pose regressors (Eqs. 2, 6, 7).

    Stage 1: y^1 = N^-1(psi(N(x; b0)); b0) for each person box b0 (Eq. 2).
    Stage s >= 2: for every joint i of the previous estimate, the joint box
    b_i = (y_i, sigma*diam(y), sigma*diam(y)) (Eq. 7) is cropped, and the stage's regressor
    gives joint i's position in that box: y_i^s = N^-1(psi_i(N(x; b_i)); b_i) (Eq. 6; as b_i is
    centred on y_i^{s-1}, this adds the regressed displacement to the previous estimate).

    A regressor outputs 2k numbers per crop (psi v1), or 3k + 1 (psi v2: the pose vector, then
    the log Laplace scale of each joint's error in box units, then a presence logit); the extra
    outputs give :class:`CascadeResult`'s ``joint_scale``, ``confidence`` and ``presence``.

    Args:
        regressors: one :class:`StageRegressor` (a backend's
            :class:`engine.backends.base.Regressor`) per stage, stage 1 first.
        skeleton: the joints regressed (k = skeleton.k; each regressor outputs 2k or 3k + 1 numbers).
        sigma: joint box size in units of diam(y).
        input_size: crop side in pixels: one int for every stage (220), or one per stage
            (a model whose refinement stages take smaller crops, ``ModelInfo.stage_input_sizes``).
        stage_joints: per stage, the indices of the joints it refines, or None for all k
            (``ModelInfo.stage_joints``). A stage s >= 2 crops only its joints' boxes and the
            other joints keep their stage s-1 position (or move with a refined one,
            ``stage_follow``): the paper refines every joint, but a
            stage whose network helps only some joints (stage 3 of the shipped FLIC model:
            elbows, wrists and nose) then costs only those crops. Stage 1 always
            regresses all k.
        stage_follow: per stage, {follower: leader} joint indices, or None
            (``ModelInfo.stage_follow``): a follower is not cropped at that stage (it must not
            be one of the stage's joints) and moves by its leader's stage displacement,
            y_f^s = y_f^{s-1} + (y_l^s - y_l^{s-1}) (the leader must be one of the stage's
            joints). For joints of one rigid part: the shipped FLIC model's eyes follow the nose
            at stages 2 and 3, one crop for the face instead of three, and on FLIC val the eyes
            came out no worse (stage 3 PDJ@0.1 0.936 / 0.945 against 0.921 / 0.932 refined on
            their own; docs/flic_ablation.md).
        min_box_fraction: joint boxes are at least this fraction of max(b0_w, b0_h), a floor
            for degenerate estimates.
        normalization: the model's pixel normalization (an :class:`engine.model.Normalization`:
            ``mean``, ``std``, ``channel_order``); None: the defaults of engine.geometry.
        flip: flip test-time averaging, one of :data:`FLIP_MODES`: "off"; "first" (stage 1
            only: one more crop per person); "all" (every stage: twice the network work). A
            flipped stage also runs every crop mirrored, in the same batch, maps the mirrored
            output back (x negated, left and right joints swapped by ``skeleton.mirror``) and
            averages it with the direct one. May be changed between calls. Measured on FLIC val
            (shipped model, stage 3, PDJ@0.2 elbows / wrists): off 0.751 / 0.611, first
            0.757 / 0.617, all 0.764 / 0.618.
    Raises:
        ValueError: no regressors, an unknown ``flip`` mode, not one input size (or joint
            list, or follow map) per stage, a joint list for stage 1 or with an index outside
            0..k-1, or a follow map on stage 1 or whose follower the stage refines or whose
            leader it does not.
    """

    def __init__(self, regressors: Sequence[StageRegressor], skeleton: Skeleton, sigma: float,
                 input_size: int | Sequence[int] = INPUT_SIZE, min_box_fraction: float = 0.05, normalization=None,
                 flip: str = "off", stage_joints: Sequence[Sequence[int] | None] | None = None,
                 stage_follow: Sequence[Mapping[int, int] | None] | None = None):
        if not regressors:
            raise ValueError("a cascade needs at least one stage")
        self.regressors = list(regressors)
        self.skeleton = skeleton
        self.sigma = float(sigma)
        sizes = [int(input_size)] * len(self.regressors) if np.isscalar(input_size) else [int(v) for v in input_size]
        if len(sizes) != len(self.regressors):
            raise ValueError(f"{len(sizes)} input sizes for {len(self.regressors)} stages")
        self.input_sizes = sizes
        joints = [None] * len(self.regressors) if stage_joints is None else list(stage_joints)
        if len(joints) != len(self.regressors):
            raise ValueError(f"{len(joints)} joint lists for {len(self.regressors)} stages")
        if joints[0] is not None:
            raise ValueError("stage 1 regresses every joint; its joint list must be None")
        k = skeleton.k
        self._refined: list[np.ndarray] = []   # per stage: the indices of the joints it refines
        for j in joints:
            idx = np.arange(k) if j is None else np.asarray(j, dtype=np.int64).reshape(-1)
            if len(idx) == 0 or idx.min() < 0 or idx.max() >= k or len(np.unique(idx)) != len(idx):
                raise ValueError(f"a stage's joints must be distinct indices in 0..{k - 1}, got {j!r}")
            self._refined.append(idx)
        follow = [None] * len(self.regressors) if stage_follow is None else list(stage_follow)
        if len(follow) != len(self.regressors):
            raise ValueError(f"{len(follow)} follow maps for {len(self.regressors)} stages")
        self._follow: list[tuple[np.ndarray, np.ndarray] | None] = []   # per stage: (followers, leaders)
        for s, (f, idx) in enumerate(zip(follow, self._refined)):
            if f is not None and not isinstance(f, Mapping):
                raise ValueError(f"stage {s + 1}'s followers must be a mapping {{follower: leader}}, got {f!r}")
            if not f:
                self._follow.append(None)
                continue
            fol, lead = (np.asarray(v, dtype=np.int64) for v in zip(*f.items()))
            if s == 0 or fol.min() < 0 or fol.max() >= k or np.isin(fol, idx).any() or not np.isin(lead, idx).all():
                raise ValueError(f"stage {s + 1}'s followers must be joints in 0..{k - 1} it does not refine and their "
                                 f"leaders joints it refines (stage >= 2), got {dict(f)!r}")
            self._follow.append((fol, lead))
        self.min_box_fraction = min_box_fraction
        self.flip = flip
        self._mirror = np.asarray(skeleton.mirror, dtype=np.int64)
        self.normalization = normalization
        self._norm = {} if normalization is None else {"mean": normalization.mean, "std": normalization.std,
                                                       "channel_order": normalization.channel_order}
        self._bufs: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # crop side -> (crops, inputs)

    @property
    def stage_joints(self) -> list[np.ndarray | None]:
        """Per stage, the indices of the joints it refines, None for all k (stage 1 always)."""
        k = self.skeleton.k
        return [None if len(idx) == k and (idx == np.arange(k)).all() else idx for idx in self._refined]

    @property
    def stage_follow(self) -> list[dict[int, int] | None]:
        """Per stage, {follower: leader} joint indices, None for a stage without followers."""
        return [None if f is None else dict(zip(f[0].tolist(), f[1].tolist())) for f in self._follow]

    @property
    def num_stages(self) -> int:
        return len(self.regressors)

    @property
    def flip(self) -> str:
        """Flip test-time averaging mode: "off", "first" or "all" (see the class docstring)."""
        return self._flip

    @flip.setter
    def flip(self, mode: str) -> None:
        if mode not in FLIP_MODES:
            raise ValueError(f"flip must be one of {', '.join(FLIP_MODES)}, got {mode!r}")
        self._flip = mode

    def _inputs(self, stage: int, image: np.ndarray, boxes: np.ndarray,
                angles: np.ndarray | None = None) -> np.ndarray:
        """Crop (B, 4) boxes (turned by (B,) ``angles``) at stage ``stage``'s (0-based) input
        size S and normalize into reused buffers; returns (B, 3, S, S) float32."""
        n, size = len(boxes), self.input_sizes[stage]
        bufs = self._bufs.get(size)
        if bufs is None or len(bufs[0]) < n:
            bufs = self._bufs[size] = (np.empty((n, size, size, 3), np.uint8), np.empty((n, 3, size, size), np.float32))
        crop_buf, input_buf = bufs
        crops = crop_boxes(image, boxes, size, angles=angles, out=crop_buf[:n])
        return to_network_input(crops, out=input_buf[:n], **self._norm)

    def run(self, image: np.ndarray, b0: np.ndarray, stages: int | None = None,
            angles: np.ndarray | None = None) -> CascadeResult:
        """Estimate the pose of every person box in ``image``.

        Args:
            image: (H, W, 3) uint8 frame, BGR.
            b0: (P, 4) person boxes (cx, cy, w, h) in pixels; P may be 0.
            stages: how many stages to run, 1..S (default all).
            angles: optional (P,) roll of each person in radians (rotated b0): every crop of
                that person, b0 and its joint boxes, is taken turned by the angle (upright
                person in the crop, ``engine.geometry.crop_boxes``), and the regressed joints
                are mapped back through the same rotation (:func:`engine.geometry.denormalize`).
                None or zeros: axis-aligned crops, as in the paper.
        Returns:
            A :class:`CascadeResult` with every stage's poses (image pixels).
        Raises:
            ValueError: if ``stages`` is outside 1..S or a regressor returns the wrong shape.
        """
        s_total = self.num_stages if stages is None else int(stages)
        if not 1 <= s_total <= self.num_stages:
            raise ValueError(f"stages must be in 1..{self.num_stages}, got {stages}")
        k = self.skeleton.k
        b0 = np.asarray(b0, dtype=np.float64).reshape(-1, 4)
        p = len(b0)
        poses = np.zeros((s_total, p, k, 2))
        boxes_hist = np.full((s_total - 1, p, k, 4), np.nan)   # NaN: joints a stage does not refine
        seconds: list[float] = []
        if p == 0:
            return CascadeResult(b0, poses, boxes_hist, [0.0] * s_total)
        scale = np.full((p, k), np.nan)   # Laplace scale of each joint's error, pixels
        in_box = np.ones((p, k))          # probability that each refined joint was in its joint box
        presence = np.full(p, np.nan)

        if angles is not None:
            angles = np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(p))
            if not angles.any():
                angles = None

        t = time.perf_counter()
        out, extra = self._regress(0, self._inputs(0, image, b0, angles), p)
        poses[0] = denormalize(out.reshape(p, k, 2), b0[:, None, :], None if angles is None else angles[:, None])
        if extra is not None:   # box units -> pixels: the geometric mean of b0's sides
            scale = np.exp(extra[:, :k]) * np.sqrt(b0[:, 2] * b0[:, 3])[:, None]
            presence = 1.0 / (1.0 + np.exp(-extra[:, k]))
        seconds.append(time.perf_counter() - t)

        min_size = self.min_box_fraction * b0[:, 2:4].max(axis=1)
        for s in range(1, s_total):
            t = time.perf_counter()
            boxes = joint_boxes(poses[s - 1], self.sigma, self.skeleton, min_size)  # (P, k, 4)
            idx = self._refined[s]   # only these joints are refined; the others keep stage s-1's position
            m = len(idx)
            sel = boxes[:, idx]                                                      # (P, m, 4)
            crop_angles = None if angles is None else np.repeat(angles, m)
            out, extra = self._regress(s, self._inputs(s, image, sel.reshape(p * m, 4), crop_angles), p * m)
            # Crop (p, i) predicts all k joints; joint i's own output is the one used (psi_i).
            own = out.reshape(p, m, k, 2)[:, np.arange(m), idx, :]                   # (P, m, 2) own joints
            if extra is not None:   # the own joint's scale, in its square joint box's units
                # the refined joint is right only if stage s-1 put it in the box (per coordinate,
                # within half its side): a refinement stage is sure of whatever joint its crop shows
                with np.errstate(divide="ignore", invalid="ignore"):
                    inside = (1.0 - np.exp(-0.5 * sel[..., 2] / scale[:, idx])) ** 2
                in_box[:, idx] *= np.where(np.isfinite(inside), inside, 1.0)
                scale[:, idx] = np.exp(extra.reshape(p, m, k + 1)[:, np.arange(m), idx]) * sel[..., 2]
            poses[s] = poses[s - 1]
            poses[s][:, idx] = denormalize(own, sel, None if angles is None else angles[:, None])
            if self._follow[s] is not None:   # followers take their leader's displacement
                fol, lead = self._follow[s]
                poses[s][:, fol] += poses[s][:, lead] - poses[s - 1][:, lead]
            boxes_hist[s - 1][:, idx] = sel
            seconds.append(time.perf_counter() - t)
        if np.isnan(scale).all():   # psi v1: no scale head, nothing more to compute
            return CascadeResult(b0, poses, boxes_hist, seconds)
        confidence = joint_confidence(scale, diam(poses[-1], self.skeleton)) * in_box
        return CascadeResult(b0, poses, boxes_hist, seconds, scale, confidence, presence)

    def _regress(self, stage: int, inputs: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """One stage's regressor on (B, 3, S, S) inputs: (pose outputs (batch, 2k), psi v2's extra
        outputs (batch, k + 1), log scales then the presence logit, or None for psi v1), with
        flip averaging when the mode asks for it."""
        k = self.skeleton.k
        flip = self._flip == "all" or (self._flip == "first" and stage == 0)
        if flip:
            inputs = np.concatenate([inputs, inputs[..., ::-1]])
        out = np.asarray(self.regressors[stage].regress(inputs), dtype=np.float64)
        rows = (2 if flip else 1) * batch
        if out.ndim != 2 or out.shape[0] != rows or out.shape[1] not in (2 * k, 3 * k + 1):
            raise ValueError(f"stage {stage + 1} regressor returned shape {out.shape}, expected ({rows}, {2 * k}) "
                             f"or ({rows}, {3 * k + 1})")
        pose, extra = out[:, :2 * k], (out[:, 2 * k:] if out.shape[1] > 2 * k else None)
        if flip:
            mirrored = pose[batch:].reshape(batch, k, 2)[:, self._mirror] * np.array([-1.0, 1.0])
            pose = 0.5 * (pose[:batch] + mirrored.reshape(batch, 2 * k))
            if extra is not None:
                extra = 0.5 * (extra[:batch] + np.concatenate([extra[batch:, :k][:, self._mirror], extra[batch:, k:]], 1))
        return pose, extra
