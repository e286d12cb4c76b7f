"""The contract every runtime backend implements: :class:`Regressor`, one cascade stage's network.

A backend turns one stage's network psi into an object that regresses joints from crops:

- ``name``: the backend's name (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``), a class attribute;
- ``description``: one line naming the library version, device, precision and threads;
- ``max_batch``: the largest batch one execution takes (larger batches are run in chunks), or
  None when any batch runs in one execution;
- ``reason``: why this backend was chosen ("asked for (...)" or "auto: ..."), "" when unknown;
- ``regress(crops)``: float32 (B, 3, S, S) -> float32 (B, 2k), for any B >= 1;
- ``close()``: release the network and its buffers; idempotent; ``regress`` then raises.

Everything is set when the object is created; nothing is attached afterwards.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..model import ModelError

NO_GPU = "TensorRT needs an NVIDIA GPU with CUDA, and none was found"
"""Why TensorRT cannot run on a machine without a usable NVIDIA GPU."""


class BackendError(ModelError):
    """A backend that cannot run here or cannot load this model; the message is one line."""


class Regressor(ABC):
    """One stage's network psi behind a runtime backend (see the module docstring).

    Args:
        description: one line naming the library version, device, precision (and threads).
        max_batch: largest batch of one execution (None: unbounded); ``regress`` accepts any
            B >= 1 regardless, splitting larger batches.
        reason: why the backend was chosen (``"auto: ..."`` when :func:`engine.backends.resolve_backend`
            picked it).

    Attributes:
        input_side: the crop side S in pixels the network takes, where the backend can read it
            from the network (None: unknown); checked against the manifest by
            :func:`engine.backends.cascade_from`.
        int8: the network runs as an int8 copy (ONNX Runtime's ``stageN.int8.onnx``); shown by
            :func:`engine.backends.describe_regressors`, not in ``description``.
    """

    name: ClassVar[str] = ""
    input_side: int | None = None
    int8: bool = False

    def __init__(self, description: str, max_batch: int | None = None, reason: str = ""):
        if max_batch is not None and int(max_batch) < 1:
            raise BackendError(f"{self.name or type(self).__name__}: max_batch must be >= 1 or None, got {max_batch}")
        self.description = str(description)
        self.max_batch = None if max_batch is None else int(max_batch)
        self.reason = str(reason)
        self.closed = False

    @abstractmethod
    def regress(self, crops: np.ndarray) -> np.ndarray:
        """Regress the joints of a batch of crops.

        Args:
            crops: (B, 3, S, S) float32 network inputs, B >= 1 (S: the stage's crop side), normalized as by
                :func:`engine.geometry.to_network_input`.
        Returns:
            (B, 2k) float32: per crop the k joints (x_1, y_1, ..., x_k, y_k) in coordinates
            normalized by the crop's box (Eq. 1; the box spans [-0.5, 0.5]).
        Raises:
            BackendError: the regressor was closed, or the backend failed to execute.
        """

    def close(self) -> None:
        """Release the network, sessions and buffers; idempotent. ``regress`` raises afterwards."""
        if not self.closed:
            self.closed = True
            self._release()

    @abstractmethod
    def _release(self) -> None:
        """Free the backend's resources (called once by :meth:`close`)."""

    def _check_open(self) -> None:
        if self.closed:
            raise BackendError(f"{self.name} regressor was closed")

    def __enter__(self) -> "Regressor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}{' (closed)' if self.closed else ''}>"
