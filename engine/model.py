"""Model folders: a manifest (JSON), one checkpoint per cascade stage and its ONNX graph.

Layout of a model folder (``weights/flic/``)::

    manifest.json      what the model is (see :func:`write_manifest` for the keys)
    stage1.pt ...      one checkpoint per stage: {"config": PoseRegressor.config(),
                       "state_dict": ..., "stage": s} (tensors may be stored as fp16);
                       read by the torch backend and the build-time tools
    stage1.onnx ...    one ONNX graph per stage (``python main.py export-onnx``), named by the
                       manifest's stage entries; read by the ONNX Runtime backend and
                       ``build-engines``

This module imports neither torch nor the backends (``engine.backends.load_cascade`` turns a
folder into a ready cascade); :func:`load_stage_module` imports torch when called.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .skeletons import Skeleton, get_skeleton

if TYPE_CHECKING:  # pragma: no cover
    from .network import PoseRegressor

MANIFEST = "manifest.json"
FORMAT = "deeppose-model/1"


class ModelError(RuntimeError):
    """A model folder, manifest or checkpoint that cannot be used; the message is one line."""


@dataclass
class ModelInfo:
    """A parsed manifest: the model folder and the fields the runtime needs."""

    folder: Path
    manifest: dict

    @property
    def skeleton(self) -> Skeleton:
        return get_skeleton(self.manifest["skeleton"]["name"])

    @property
    def sigma(self) -> float:
        return float(self.manifest["sigma"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def stage_files(self) -> list[Path]:
        """The stage checkpoints, stage 1 first (they may be absent from a runtime-only folder)."""
        return [self.folder / s["checkpoint"] for s in self.manifest["stages"]]

    @property
    def onnx_files(self) -> list[Path | None]:
        """The stage ONNX graphs the manifest names, stage 1 first (None: not exported yet)."""
        return [self.folder / s["onnx"] if s.get("onnx") else None for s in self.manifest["stages"]]

    @property
    def scaler(self) -> dict | None:
        """The fitted face-box scaler (see engine.detector), or None if the model has none."""
        return self.manifest.get("scaler")


def read_manifest(folder: str | Path) -> ModelInfo:
    """Read and check ``folder/manifest.json``.

    Raises:
        ModelError: the folder or manifest is missing, unreadable, of another format, or lacks
            a field the runtime reads. (Whether the stage files a backend needs exist is
            checked by that backend.)
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(f"no model at {folder}: {path} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelError(f"{path} is not a {FORMAT} manifest (format={found!r})")
    _check_manifest(path, manifest)
    return ModelInfo(folder, manifest)


def _check_manifest(path: Path, m: dict) -> None:
    """Raise ModelError (one line) for a manifest lacking what the runtime reads."""
    stages = m.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) and "checkpoint" in s for s in stages):
        raise ModelError(f"{path}: 'stages' must be a non-empty list of {{stage, checkpoint[, onnx]}} entries")
    skeleton = m.get("skeleton")
    name = skeleton.get("name") if isinstance(skeleton, dict) else None
    try:
        get_skeleton(name)
    except KeyError:
        raise ModelError(f"{path}: unknown skeleton {name!r}") from None
    for key in ("sigma", "input_size"):
        if not isinstance(m.get(key), (int, float)) or not m[key] > 0:
            raise ModelError(f"{path}: {key!r} must be a positive number, got {m.get(key)!r}")
    if m.get("scaler") is not None and not isinstance(m["scaler"], dict):
        raise ModelError(f"{path}: 'scaler' must be an object or null")


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``manifest`` (with ``format`` set) to ``folder/manifest.json``; returns its path.

    Keys: format, name, skeleton (Skeleton.to_dict()), sigma, input_size, normalization,
    preset, stages [{stage, checkpoint, onnx, ...}], scaler, training, val_metrics.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_stage_module(path: str | Path, expected_joints: int | None = None) -> "PoseRegressor":
    """Rebuild one stage's :class:`engine.network.PoseRegressor` from its checkpoint, in fp32,
    eval mode (imports torch).

    Raises:
        ModelError: missing or unreadable file, not a deeppose stage checkpoint, or a joint
            count that does not match ``expected_joints``.
    """
    import torch

    from .network import build_network

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"stage checkpoint {path.name} is missing from {path.parent}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ModelError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ModelError(f"{path} is not a deeppose stage checkpoint (no config/state_dict)")
    cfg = ckpt["config"]
    if expected_joints is not None and cfg["num_joints"] != expected_joints:
        raise ModelError(f"{path} regresses {cfg['num_joints']} joints, the model has {expected_joints}")
    try:
        net = build_network(cfg["num_joints"], cfg["preset"])
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (KeyError, RuntimeError) as e:
        raise ModelError(f"{path} does not match preset {cfg.get('preset')!r}: {str(e).splitlines()[0]}") from None
    return net.eval()
