"""PyTorch backend: psi on the CPU, or on CUDA (fp16) when a GPU is present."""
from __future__ import annotations

import numpy as np
import torch

from ..network import PoseRegressor


class TorchRegressor:
    """:class:`engine.cascade.Regressor` running a :class:`PoseRegressor` with PyTorch.

    Args:
        module: the stage's network (put in eval mode here).
        device: "cpu" or "cuda" (default: cuda when available).
        fp16: run in half precision (CUDA only; ignored on the CPU).
    """

    name = "torch"

    def __init__(self, module: PoseRegressor, device: str | None = None, fp16: bool | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.fp16 = bool(fp16 if fp16 is not None else self.device.type == "cuda") and self.device.type == "cuda"
        self.module = module.to(self.device).eval()
        if self.fp16:
            self.module.half()

    @torch.inference_mode()
    def regress(self, crops: np.ndarray) -> np.ndarray:
        """(B, 3, 220, 220) float32 -> (B, 2k) float32 normalized coordinates."""
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(self.device, non_blocking=True)
        if self.fp16:
            x = x.half()
        return self.module(x).float().cpu().numpy()
