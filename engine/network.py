"""psi(x; theta): the AlexNet-style pose regressor of the paper (Sec. 3.1), as named presets.

Both presets follow the paper's layer pattern C-LRN-P-C-LRN-P-C-C-C-P-F-F on a 220x220 input
with a linear output of 2k normalized coordinates (x_1, y_1, ..., x_k, y_k):

- ``paper``: the paper's sizes, C(55x55x96) - LRN - P - C(27x27x256) - LRN - P - C(13x13x384)
  - C(13x13x384) - C(13x13x256) - P - F(4096) - F(4096), dropout 0.6 on the F layers
  (about 60M parameters: too slow to train and too large to ship from these machines).
- ``compact``: the same pattern and feature-map sizes with fewer channels, batch norm in place
  of LRN (it trains from scratch far better on FLIC's few thousand images), and F(512) layers:
  about 3M parameters and 0.1 GMAC per crop, fast enough for the 3-stage cascade on 2 CPU cores.

The preset name is recorded in every checkpoint; :func:`build_network` rebuilds it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .geometry import INPUT_SIZE, MIN_INPUT_SIZE


@dataclass(frozen=True)
class Preset:
    """Layer sizes of one network preset (see the module docstring)."""

    conv1: int
    conv1_kernel: int
    conv2: int
    conv2_kernel: int
    conv345: tuple[int, int, int]
    fc: int
    dropout: float
    norm: str  # "lrn" (paper) or "batch"


PRESETS: dict[str, Preset] = {
    "paper": Preset(conv1=96, conv1_kernel=11, conv2=256, conv2_kernel=5, conv345=(384, 384, 256),
                    fc=4096, dropout=0.6, norm="lrn"),
    "compact": Preset(conv1=32, conv1_kernel=7, conv2=64, conv2_kernel=3, conv345=(128, 128, 128),
                      fc=512, dropout=0.3, norm="batch"),
}


def _lrn() -> nn.Module:
    """The paper's local response normalization (AlexNet's constants)."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _conv(cin: int, cout: int, kernel: int, stride: int, norm: str | None) -> list[nn.Module]:
    # padding kernel//2 keeps 27 and 13 maps and takes conv1 (stride 4) from 220 to 55.
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=norm != "batch")]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class PoseRegressor(nn.Module):
    """psi(x; theta): crops (B, 3, S, S) float32 -> (B, 2k) normalized joint coordinates.

    S is ``input_size``: the paper's 220, or smaller for cheaper refinement stages (compact:
    about 92 M multiply-adds per crop at 220, 28 M at 128, 15 M at 96). Whether a stage keeps
    its accuracy on smaller crops is a measurement: on FLIC val a 96-pixel stage 2 lost little,
    a 96- or 128-pixel stage 3 lost 5 points of wrists (docs/flic_ablation.md).

    Input pixels are normalized as in :func:`engine.geometry.to_network_input`. Output row b
    is (x_1, y_1, ..., x_k, y_k) in the coordinates of the crop's box (Eq. 1), trained with
    the L2 loss of Eq. 4.
    """

    def __init__(self, num_joints: int, preset: str = "compact", input_size: int = INPUT_SIZE):
        super().__init__()
        if preset not in PRESETS:
            raise KeyError(f"unknown network preset {preset!r}; known: {sorted(PRESETS)}")
        p = PRESETS[preset]
        self.preset = preset
        self.num_joints = num_joints
        self.input_size = int(input_size)
        side = feature_side(self.input_size, p.conv1_kernel)
        c3, c4, c5 = p.conv345
        lrn = p.norm == "lrn"
        # Feature maps: 220 -> 55 (conv1, stride 4) -> 27 (pool) -> 27 -> 13 (pool) -> 13 -> 6 (pool);
        # a 128 input: 32 -> 15 -> 7 -> 3, a 96 input: 24 -> 11 -> 5 -> 2 (the first F layer follows the side).
        layers: list[nn.Module] = _conv(3, p.conv1, p.conv1_kernel, 4, "batch" if not lrn else None)
        if lrn:
            layers.append(_lrn())
        layers.append(nn.MaxPool2d(3, 2))
        layers += _conv(p.conv1, p.conv2, p.conv2_kernel, 1, "batch" if not lrn else None)
        if lrn:
            layers.append(_lrn())
        layers.append(nn.MaxPool2d(3, 2))
        norm3 = None if lrn else "batch"
        layers += _conv(p.conv2, c3, 3, 1, norm3)
        layers += _conv(c3, c4, 3, 1, norm3)
        layers += _conv(c4, c5, 3, 1, norm3)
        layers.append(nn.MaxPool2d(3, 2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c5 * side * side, p.fc), nn.ReLU(inplace=True), nn.Dropout(p.dropout),
            nn.Linear(p.fc, p.fc), nn.ReLU(inplace=True), nn.Dropout(p.dropout),
            nn.Linear(p.fc, 2 * num_joints),
        )
        # Start the output at the box centre with small spread: a stable start for Eq. 4.
        nn.init.normal_(self.head[-1].weight, std=1e-3)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 -> (B, 2k) normalized coordinates."""
        return self.head(self.features(x))

    def config(self) -> dict:
        """What :func:`build_network` needs to rebuild this module (stored in checkpoints)."""
        return {"preset": self.preset, "num_joints": self.num_joints, "input_size": self.input_size,
                "layers": asdict(PRESETS[self.preset])}


def feature_side(input_size: int, conv1_kernel: int) -> int:
    """Side of psi's last feature map for an S x S input: conv1 (stride 4, padding k//2), then
    three 3x3 stride-2 max pools. Raises ValueError for an input under MIN_INPUT_SIZE (60 px
    leave conv1 at least 15 cells, the pools 7, 3 and 1)."""
    if input_size < MIN_INPUT_SIZE:
        raise ValueError(f"input size {input_size} is too small for psi (it needs at least {MIN_INPUT_SIZE} pixels)")
    side = (input_size + 2 * (conv1_kernel // 2) - conv1_kernel) // 4 + 1
    for _ in range(3):
        side = (side - 3) // 2 + 1
    return side


def build_network(num_joints: int, preset: str = "compact", input_size: int = INPUT_SIZE) -> PoseRegressor:
    """A freshly initialized psi for k = ``num_joints`` joints on S x S = ``input_size`` crops;
    raises KeyError for an unknown preset, ValueError for an input side below MIN_INPUT_SIZE (60) pixels."""
    return PoseRegressor(num_joints, preset, input_size)
