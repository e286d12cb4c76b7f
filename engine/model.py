"""Model folders: a manifest (JSON) plus one checkpoint per cascade stage.

Layout of a model folder (``weights/flic/``)::

    manifest.json      what the model is (see :func:`write_manifest` for the keys)
    stage1.pt ...      one checkpoint per stage: {"config": PoseRegressor.config(),
                       "state_dict": ..., "stage": s} (tensors may be stored as fp16)

:func:`load_cascade` turns a folder into a ready :class:`engine.cascade.Cascade`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .cascade import Cascade
from .network import PoseRegressor, build_network
from .skeletons import Skeleton, get_skeleton

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
        return [self.folder / s["checkpoint"] for s in self.manifest["stages"]]

    @property
    def scaler(self) -> dict | None:
        """The fitted face-box scaler (see engine.detector), or None if the model has none."""
        return self.manifest.get("scaler")


def read_manifest(folder: str | Path) -> ModelInfo:
    """Read and check ``folder/manifest.json``.

    Raises:
        ModelError: the folder or manifest is missing, unreadable, of another format, or names
            a stage checkpoint that is absent.
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
    info = ModelInfo(folder, manifest)
    for f in info.stage_files:
        if not f.is_file():
            raise ModelError(f"{path} names stage checkpoint {f.name}, which is missing")
    return info


def _check_manifest(path: Path, m: dict) -> None:
    """Raise ModelError (one line) for a manifest lacking what the runtime reads."""
    stages = m.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) and "checkpoint" in s for s in stages):
        raise ModelError(f"{path}: 'stages' must be a non-empty list of {{stage, checkpoint}} entries")
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
    preset, stages [{stage, checkpoint, ...}], scaler, training, val_metrics.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **manifest}, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_stage_module(path: str | Path, expected_joints: int | None = None) -> PoseRegressor:
    """Rebuild one stage's :class:`PoseRegressor` from its checkpoint, in fp32, eval mode.

    Raises:
        ModelError: unreadable file, not a deeppose stage checkpoint, or a joint count that
            does not match ``expected_joints``.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        # Never pass on torch's advice to retry with weights_only=False: that would run code
        # from an untrusted file. Only a short cause that does not give that advice is kept.
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or len(cause) > 120:
            cause = "it holds something other than the tensors and numbers of a checkpoint"
        raise ModelError(f"{path} is not a valid deeppose checkpoint ({cause})") from None
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


def load_cascade(folder: str | Path, backend: str = "torch", **backend_options) -> tuple[Cascade, ModelInfo]:
    """Load a model folder as a :class:`Cascade` on the given backend.

    Args:
        folder: model folder with manifest.json and stage checkpoints.
        backend: runtime backend: "auto" (the fastest available), "torch", "onnxruntime" or
            "tensorrt" (see engine.backends.create_regressors for its options).
    Returns:
        (cascade, model info).
    Raises:
        ModelError: see :func:`read_manifest` and :func:`load_stage_module`.
    """
    from .backends import create_regressors

    info = read_manifest(folder)
    regressors = create_regressors(info, backend, **backend_options)
    return Cascade(regressors, info.skeleton, info.sigma, info.input_size), info
