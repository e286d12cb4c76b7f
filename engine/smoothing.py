"""Temporal smoothing of pose vectors: the One-Euro filter (Casiez, Roussel & Vogel, CHI 2012).

The One-Euro filter is a first-order low-pass filter whose cutoff frequency rises with the
signal's speed: at rest it removes jitter (low cutoff), in fast motion it follows with little
lag (high cutoff). For each new sample x_t at time t (seconds), with dt = t - t_prev:

    alpha(f_c) = 1 / (1 + tau / dt),  tau = 1 / (2 pi f_c)
    dx_t    = (x_t - xhat_{t-1}) / dt
    dxhat_t = alpha(d_cutoff) dx_t + (1 - alpha(d_cutoff)) dxhat_{t-1}
    f_c     = min_cutoff + beta |dxhat_t|
    xhat_t  = alpha(f_c) x_t + (1 - alpha(f_c)) xhat_{t-1}

Here it is vectorised over the k joints of a pose vector (k, 2) in pixels, with two choices
of ours, both documented in :class:`OneEuroFilter`:

- the speed |dxhat| is the norm of a joint's 2-D velocity (one cutoff per joint, the same on
  x and y, so the filter is isotropic);
- the speed is divided by a per-call ``scale`` (the person's box size in pixels), so ``beta``
  is in units of 1 / (box sizes per second) and the same parameters suit a person 100 px
  tall and one 700 px tall.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of the One-Euro filter (defaults used for video).

    Attributes:
        min_cutoff: cutoff frequency at rest, Hz. Lower = less jitter, more lag when slow.
            1.0 Hz removes most frame-to-frame jitter of the cascade at 25-30 fps.
        beta: speed coefficient, Hz per (box size per second). The cutoff is
            ``min_cutoff + beta * speed / scale``; 5.0 lifts it to ~6 Hz for a joint moving
            one box size per second (a swinging arm), so fast motion is followed closely.
        d_cutoff: cutoff frequency of the speed estimate, Hz (1.0 as in the paper).
    """

    min_cutoff: float = 1.0
    beta: float = 5.0
    d_cutoff: float = 1.0


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """alpha = 1 / (1 + tau / dt) with tau = 1 / (2 pi cutoff); ``cutoff`` in Hz, ``dt`` in seconds."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over a pose vector (k, 2) in pixels, one cutoff per joint.

    Args:
        params: :class:`OneEuroParams` (min_cutoff Hz, beta, d_cutoff Hz).
        min_dt: smallest time step used, seconds (guards repeated or out-of-order timestamps).

    Non-finite (NaN) input joints leave that joint's estimate unchanged; a joint seen for the
    first time starts at its input value.
    """

    def __init__(self, params: OneEuroParams | None = None, min_dt: float = 1e-3):
        self.params = params or OneEuroParams()
        self.min_dt = float(min_dt)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample is passed through unchanged."""
        self._x: np.ndarray | None = None   # (k, 2) last estimate xhat, pixels
        self._dx: np.ndarray | None = None  # (k, 2) last speed estimate dxhat, pixels/s
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: (k, 2) pose in pixels (NaN = missing joint).
            t: timestamp in seconds (monotonic within a video or stream).
            scale: size that speeds are divided by before ``beta`` applies, pixels
                (the person's box size); 1.0 gives the paper's unscaled filter.
        Returns:
            (k, 2) float64 smoothed pose, pixels (a new array).
        """
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t = float(t)
            return self._x.copy()
        p = self.params
        dt = max(float(t) - self._t, self.min_dt)
        prev = self._x
        fresh = ~np.isfinite(prev).all(axis=-1)          # (k,) joints with no estimate yet
        valid = np.isfinite(x).all(axis=-1)              # (k,) joints present in this sample
        dx = np.where(valid[:, None] & ~fresh[:, None], (x - prev) / dt, 0.0)
        a_d = smoothing_factor(p.d_cutoff, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        speed = np.linalg.norm(dx_hat, axis=-1) / max(float(scale), 1e-9)   # (k,)
        a = smoothing_factor(p.min_cutoff + p.beta * speed, dt)[:, None]    # (k, 1)
        out = np.where(valid[:, None], np.where(fresh[:, None], x, a * x + (1.0 - a) * prev), prev)
        self._x = out
        self._dx = np.where(valid[:, None], dx_hat, self._dx)
        self._t = float(t)
        return out.copy()
