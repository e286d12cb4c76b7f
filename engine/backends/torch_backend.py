"""PyTorch backend: psi on the CPU, or on CUDA (fp16) when a GPU is present."""
from __future__ import annotations

import numpy as np
import torch

from ..network import PoseRegressor
from .base import BackendError, Regressor


class TorchRegressor(Regressor):
    """:class:`engine.backends.base.Regressor` running a :class:`PoseRegressor` with PyTorch.

    Any batch runs in one forward pass (``max_batch`` None).

    Args:
        module: the stage's network (put in eval mode here).
        device: "cpu" or "cuda" (default: cuda when available).
        fp16: run in half precision (CUDA only; ignored on the CPU).
        reason: why this backend was chosen (see :class:`Regressor`).
    Raises:
        BackendError: ``device`` names a CUDA device and PyTorch sees no GPU.
    """

    name = "torch"

    def __init__(self, module: PoseRegressor, device: str | None = None, fp16: bool | None = None, reason: str = ""):
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError as e:
            raise BackendError(f"torch: bad device {device!r}: {str(e).splitlines()[0]}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"torch: device {device!r} asked for, but PyTorch sees no CUDA GPU")
        self.fp16 = bool(fp16 if fp16 is not None else self.device.type == "cuda") and self.device.type == "cuda"
        self.module = module.to(self.device).eval()
        self.input_side = getattr(module, "input_size", None)   # the crop side S the network takes
        if self.fp16:
            self.module.half()
        if self.device.type == "cpu":
            where = f"cpu, {'fp16' if self.fp16 else 'fp32'}, {torch.get_num_threads()} threads"
        else:
            where = f"{self.device} {torch.cuda.get_device_name(self.device)}, {'fp16' if self.fp16 else 'fp32'}"
        super().__init__(f"torch {torch.__version__} ({where})", None, reason)

    @torch.inference_mode()
    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, 2k) float32 normalized coordinates (see :class:`Regressor`)."""
        self._check_open()
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device, non_blocking=True)
        if self.fp16:
            x = x.half()
        return self.module(x).float().cpu().numpy()

    def _release(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
