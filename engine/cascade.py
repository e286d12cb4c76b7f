"""The DeepPose cascade (Sec. 3.2): stage 1 on the person box b0, refinement stages on joint boxes.

The cascade is written once against :class:`engine.backends.base.Regressor`, so that the PyTorch, ONNX Runtime and
TensorRT backends plug in unchanged. Every stage runs all of its crops (all persons, and at
stages s >= 2 all k joints of every person) in ONE batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .cli_args import FLIP_MODES  # defined with the CLI options, which must stay light
from .geometry import INPUT_SIZE, crop_boxes, denormalize, joint_boxes, to_network_input
from .skeletons import Skeleton



if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Regressor  # the contract every backend implements


@dataclass
class CascadeResult:
    """Poses of every stage for the P persons of one frame.

    Attributes:
        b0: (P, 4) person boxes (cx, cy, w, h), pixels.
        stage_poses: (S, P, k, 2) pose of each stage in pixels; ``stage_poses[-1]`` is final.
        stage_boxes: (S-1, P, k, 4) the joint boxes stage s >= 2 cropped (Eq. 7), pixels.
        stage_seconds: wall time of each stage (crop + regress + update), seconds.
    """

    b0: np.ndarray
    stage_poses: np.ndarray
    stage_boxes: np.ndarray
    stage_seconds: list[float] = field(default_factory=list)

    @property
    def poses(self) -> np.ndarray:
        """(P, k, 2) final poses in pixels."""
        return self.stage_poses[-1]

    @property
    def num_stages(self) -> int:
        return self.stage_poses.shape[0]


class Cascade:
    """The cascade of S stages of pose regressors (Eqs. 2, 6, 7).

    Stage 1: y^1 = N^-1(psi(N(x; b0)); b0) for each person box b0 (Eq. 2).
    Stage s >= 2: for every joint i of the previous estimate, the joint box
    b_i = (y_i, sigma*diam(y), sigma*diam(y)) (Eq. 7) is cropped, and the stage's regressor
    gives joint i's position in that box: y_i^s = N^-1(psi_i(N(x; b_i)); b_i) (Eq. 6; as b_i is
    centred on y_i^{s-1}, this adds the regressed displacement to the previous estimate).

    Args:
        regressors: one :class:`Regressor` per stage, stage 1 first.
        skeleton: the joints regressed (k = skeleton.k; each regressor outputs 2k numbers).
        sigma: joint box size in units of diam(y).
        input_size: crop side in pixels (220).
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
        ValueError: no regressors, or an unknown ``flip`` mode.
    """

    def __init__(self, regressors: Sequence[Regressor], skeleton: Skeleton, sigma: float,
                 input_size: int = INPUT_SIZE, min_box_fraction: float = 0.05, normalization=None,
                 flip: str = "off"):
        if not regressors:
            raise ValueError("a cascade needs at least one stage")
        self.regressors = list(regressors)
        self.skeleton = skeleton
        self.sigma = float(sigma)
        self.input_size = input_size
        self.min_box_fraction = min_box_fraction
        self.flip = flip
        self._mirror = np.asarray(skeleton.mirror, dtype=np.int64)
        self.normalization = normalization
        self._norm = {} if normalization is None else {"mean": normalization.mean, "std": normalization.std,
                                                       "channel_order": normalization.channel_order}
        self._crop_buf = np.empty((0, input_size, input_size, 3), np.uint8)
        self._input_buf = np.empty((0, 3, input_size, input_size), np.float32)

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

    def _inputs(self, image: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> np.ndarray:
        """Crop (B, 4) boxes (turned by (B,) ``angles``) and normalize into reused buffers;
        returns (B, 3, S, S) float32."""
        n = len(boxes)
        if len(self._crop_buf) < n:
            self._crop_buf = np.empty((n, self.input_size, self.input_size, 3), np.uint8)
            self._input_buf = np.empty((n, 3, self.input_size, self.input_size), np.float32)
        crops = crop_boxes(image, boxes, self.input_size, angles=angles, out=self._crop_buf[:n])
        return to_network_input(crops, out=self._input_buf[:n], **self._norm)

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
        boxes_hist = np.zeros((s_total - 1, p, k, 4))
        seconds: list[float] = []
        if p == 0:
            return CascadeResult(b0, poses, boxes_hist, [0.0] * s_total)

        if angles is not None:
            angles = np.nan_to_num(np.asarray(angles, dtype=np.float64).reshape(p))
            if not angles.any():
                angles = None
        joint_angles = None if angles is None else np.repeat(angles, k)     # (P*k,)

        t = time.perf_counter()
        out = self._regress(0, self._inputs(image, b0, angles), p)
        poses[0] = denormalize(out.reshape(p, k, 2), b0[:, None, :], None if angles is None else angles[:, None])
        seconds.append(time.perf_counter() - t)

        min_size = self.min_box_fraction * b0[:, 2:4].max(axis=1)
        for s in range(1, s_total):
            t = time.perf_counter()
            boxes = joint_boxes(poses[s - 1], self.sigma, self.skeleton, min_size)  # (P, k, 4)
            out = self._regress(s, self._inputs(image, boxes.reshape(p * k, 4), joint_angles), p * k)
            # Crop (p, i) predicts all k joints; joint i's own output is the one used (psi_i).
            own = out.reshape(p, k, k, 2)[:, np.arange(k), np.arange(k), :]  # (P, k, 2)
            poses[s] = denormalize(own, boxes, None if angles is None else angles[:, None])
            boxes_hist[s - 1] = boxes
            seconds.append(time.perf_counter() - t)
        return CascadeResult(b0, poses, boxes_hist, seconds)

    def _regress(self, stage: int, inputs: np.ndarray, batch: int) -> np.ndarray:
        k = self.skeleton.k
        flip = self._flip == "all" or (self._flip == "first" and stage == 0)
        if flip:
            inputs = np.concatenate([inputs, inputs[..., ::-1]])
        out = np.asarray(self.regressors[stage].regress(inputs), dtype=np.float64)
        expected = ((2 if flip else 1) * batch, 2 * k)
        if out.shape != expected:
            raise ValueError(f"stage {stage + 1} regressor returned shape {out.shape}, expected {expected}")
        if flip:
            mirrored = out[batch:].reshape(batch, k, 2)[:, self._mirror] * np.array([-1.0, 1.0])
            out = 0.5 * (out[:batch] + mirrored.reshape(batch, 2 * k))
        return out
