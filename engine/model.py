"""Model folders: a manifest (JSON), one checkpoint per cascade stage and its ONNX graph.

Layout of a model folder (``weights/flic/``)::

    manifest.json      what the model is: a :class:`Manifest` (read and written here only)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .geometry import MIN_INPUT_SIZE, PIXEL_MEAN, PIXEL_STD
from .skeletons import Skeleton, get_skeleton

if TYPE_CHECKING:  # pragma: no cover
    from .network import PoseRegressor

MANIFEST = "manifest.json"
FORMAT = "deeppose-model/1"


class ModelError(RuntimeError):
    """A model folder, manifest or checkpoint that cannot be used; the message is one line."""


COORDINATES = "N(y; b) = (y - b_c) / (b_w, b_h)"
"""How the networks' outputs are normalized (Eq. 1), recorded in every manifest."""


@dataclass(frozen=True)
class Normalization:
    """Pixel normalization of the network input: ``(value - mean[c]) / std[c]`` per channel c,
    channels in ``channel_order`` ("BGR", OpenCV's order, or "RGB"); values in 0..255.

    The runtime crops in BGR and normalizes with these (``engine.geometry.to_network_input``).
    """

    mean: tuple[float, float, float] = (PIXEL_MEAN,) * 3
    std: tuple[float, float, float] = (PIXEL_STD,) * 3
    channel_order: str = "BGR"
    coordinates: str = COORDINATES

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Normalization":
        """Parse ``{"mean": [3], "std": [3], "channel_order": ..., "coordinates": ...}``.

        Raises:
            ModelError: wrong lengths, a std <= 0, or an unknown channel order (one line).
        """
        if not isinstance(d, dict):
            raise ModelError(f"{where}: 'normalization' must be an object")
        try:
            mean = tuple(float(v) for v in d.get("mean", cls.mean))
            std = tuple(float(v) for v in d.get("std", cls.std))
        except (TypeError, ValueError):
            raise ModelError(f"{where}: normalization mean and std must be lists of 3 numbers") from None
        if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
            raise ModelError(f"{where}: normalization needs 3 means and 3 positive stds, got {mean} and {std}")
        order = d.get("channel_order", "BGR")
        if order not in ("BGR", "RGB"):
            raise ModelError(f"{where}: normalization channel_order must be 'BGR' or 'RGB', got {order!r}")
        return cls(mean, std, order, str(d.get("coordinates", COORDINATES)))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order,
                "coordinates": self.coordinates}


@dataclass
class StageEntry:
    """One cascade stage of a model folder: its checkpoint, its ONNX file (None until
    ``export-onnx``), and what training recorded about it (``extra``: epochs, losses, the
    displacement prior, ...; kept as read)."""

    stage: int
    checkpoint: str
    onnx: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"stage": self.stage, "checkpoint": self.checkpoint}
        if self.onnx:
            out["onnx"] = self.onnx
        return {**out, **self.extra}


_KNOWN = ("format", "name", "skeleton", "sigma", "input_size", "normalization", "preset", "stages", "scaler",
          "training", "val_metrics", "val_protocol")


@dataclass
class Manifest:
    """The manifest of a model folder (``manifest.json``, format :data:`FORMAT`), typed.

    Read and written only through :meth:`from_dict` / :meth:`to_dict` (and :func:`read_manifest`
    / :func:`write_manifest`), which check it; keys this version does not know are kept in
    ``extra`` and written back.

    Attributes:
        name: model name ("flic").
        skeleton: the skeleton's definition (``Skeleton.to_dict()``; its name must be known).
        sigma: joint box size in units of diam(y) (Eq. 7).
        input_size: side of the network input in pixels (220); a stage entry may give its own
            (``ModelInfo.stage_input_sizes``), and a stage s >= 2 entry may name the joints it
            refines (``joints``; ``ModelInfo.stage_joints``) and the ones that move with a refined
            joint instead (``follow``; ``ModelInfo.stage_follow``).
        normalization: pixel normalization of the network input.
        stages: one entry per stage, stage 1 first.
        preset: network preset of the checkpoints ("compact", "paper"), None if unknown.
        scaler: the fitted face-box scaler (``engine.detection.persons.FaceScaler.to_dict()``) or None
            (b0 is then the whole frame).
        training: how the model was trained (free-form), or None.
        val_metrics: validation metrics per stage (free-form), or None.
        val_protocol: how ``val_metrics`` were measured (free-form), or None.
        extra: other keys, kept as read.
    """

    name: str
    skeleton: dict
    sigma: float
    input_size: int
    stages: list[StageEntry]
    normalization: Normalization = field(default_factory=Normalization)
    preset: str | None = None
    scaler: dict | None = None
    training: dict | None = None
    val_metrics: dict | None = None
    val_protocol: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, m: dict, where: str = "manifest") -> "Manifest":
        """Parse and check a manifest dict (``format`` may be absent, as in what the trainer
        builds; when present it must be :data:`FORMAT`).

        Raises:
            ModelError: (one line, naming ``where``) a missing or wrong field.
        """
        if not isinstance(m, dict):
            raise ModelError(f"{where} is not a {FORMAT} manifest (format={type(m).__name__!r})")
        if m.get("format", FORMAT) != FORMAT:
            raise ModelError(f"{where} is not a {FORMAT} manifest (format={m.get('format')!r})")
        stages = m.get("stages")
        if (not isinstance(stages, list) or not stages
                or not all(isinstance(s, dict) and isinstance(s.get("checkpoint"), str) for s in stages)):
            raise ModelError(f"{where}: 'stages' must be a non-empty list of {{stage, checkpoint[, onnx]}} entries")
        skeleton = m.get("skeleton")
        name = skeleton.get("name") if isinstance(skeleton, dict) else None
        try:
            known = get_skeleton(name)
        except KeyError:
            raise ModelError(f"{where}: unknown skeleton {name!r}") from None
        if "joints" in skeleton and list(skeleton["joints"]) != list(known.joints):
            raise ModelError(f"{where}: the {name} skeleton's joints are {list(known.joints)}, "
                             f"the manifest lists {skeleton['joints']!r}")
        for key in ("sigma", "input_size"):
            if isinstance(m.get(key), bool) or not isinstance(m.get(key), (int, float)) or not m[key] > 0:
                raise ModelError(f"{where}: {key!r} must be a positive number, got {m.get(key)!r}")
        for key in ("scaler", "training", "val_metrics", "val_protocol"):
            if m.get(key) is not None and not isinstance(m[key], dict):
                raise ModelError(f"{where}: {key!r} must be an object or null")
        entries = []
        for i, s in enumerate(stages, start=1):
            onnx = s.get("onnx")
            if onnx is not None and not isinstance(onnx, str):
                raise ModelError(f"{where}: stage {i}'s 'onnx' must be a file name")
            entries.append(StageEntry(int(s.get("stage", i)), s["checkpoint"], onnx,
                                      {k: v for k, v in s.items() if k not in ("stage", "checkpoint", "onnx")}))
        norm = m.get("normalization")
        return cls(name=str(m.get("name", "")), skeleton=skeleton, sigma=float(m["sigma"]),
                   input_size=int(m["input_size"]), stages=entries,
                   normalization=Normalization() if norm is None else Normalization.from_dict(norm, where),
                   preset=m.get("preset"), scaler=m.get("scaler"), training=m.get("training"),
                   val_metrics=m.get("val_metrics"), val_protocol=m.get("val_protocol"),
                   extra={k: v for k, v in m.items() if k not in _KNOWN})

    def to_dict(self) -> dict:
        """The JSON object written to ``manifest.json`` (``format`` first; empty optional keys left out)."""
        out = {"format": FORMAT, "name": self.name, "skeleton": self.skeleton, "sigma": self.sigma,
               "input_size": self.input_size, "normalization": self.normalization.to_dict()}
        if self.preset is not None:
            out["preset"] = self.preset
        out["stages"] = [s.to_dict() for s in self.stages]
        out["scaler"] = self.scaler
        for key in ("training", "val_metrics", "val_protocol"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}


def follow_indices(follow, joints, refined) -> dict[int, int]:
    """A stage's followers by index: ``follow`` {follower name: leader name} (a stage entry's
    ``follow``, ``train --refine-follow``) over the skeleton's ``joints`` (names, pose-vector
    order), where the stage refines the joint indices ``refined`` (None: every joint). A follower
    is not cropped at that stage and takes its leader's displacement (``engine.cascade.Cascade``).

    Raises:
        ValueError: ``follow`` is not a non-empty mapping of joint names, a follower is refined,
            or a leader is not.
    """
    own = set(range(len(joints)) if refined is None else refined)
    ok = isinstance(follow, dict) and follow and all(f in joints and lead in joints for f, lead in follow.items())
    out = {joints.index(f): joints.index(lead) for f, lead in follow.items()} if ok else {}
    if not ok or any(f in own or lead not in own for f, lead in out.items()):
        raise ValueError(f"'follow' must map joints the stage does not refine to joints it refines "
                         f"({{follower: leader}}, joint names), got {follow!r}")
    return out


@dataclass
class ModelInfo:
    """A model folder and its parsed :class:`Manifest`, with the fields the runtime reads."""

    folder: Path
    manifest: Manifest

    @property
    def skeleton(self) -> Skeleton:
        return get_skeleton(self.manifest.skeleton["name"])

    @property
    def sigma(self) -> float:
        return self.manifest.sigma

    @property
    def input_size(self) -> int:
        return self.manifest.input_size

    @property
    def stage_input_sizes(self) -> list[int]:
        """Crop side of each stage in pixels, stage 1 first: a stage entry's own ``input_size``
        (refinement stages may take smaller crops), else the manifest's ``input_size``.

        Raises:
            ModelError: a side that is not a whole number of at least 60 pixels.
        """
        out = []
        for i, s in enumerate(self.manifest.stages, start=1):
            size = s.extra.get("input_size", self.manifest.input_size)
            whole = not isinstance(size, bool) and isinstance(size, (int, float)) and size == int(size)
            if not whole or size < MIN_INPUT_SIZE:
                raise ModelError(f"{self.folder}: stage {i}'s 'input_size' must be a whole number of at least "
                                 f"{MIN_INPUT_SIZE} pixels, got {size!r}")
            out.append(int(size))
        return out

    @property
    def stage_joints(self) -> list[list[int] | None]:
        """Per stage, the indices of the joints it refines (a stage entry's ``joints``, distinct
        names of the skeleton's joints), or None for every joint (stage 1 always; a stage
        without the key).

        Raises:
            ModelError: a ``joints`` entry on stage 1, an empty list, a repeated name, or a name
                the skeleton does not have.
        """
        names = self.skeleton.joints
        out: list[list[int] | None] = []
        for i, s in enumerate(self.manifest.stages):
            joints = s.extra.get("joints")
            if joints is None:
                out.append(None)
                continue
            if (i == 0 or not isinstance(joints, list) or not joints or not all(j in names for j in joints)
                    or len(set(joints)) != len(joints)):
                raise ModelError(f"{self.folder}: stage {i + 1}'s 'joints' must name joints of the "
                                 f"{self.skeleton.name} skeleton, each once, on a stage >= 2, got {joints!r}")
            out.append([names.index(j) for j in joints])
        return out

    @property
    def stage_follow(self) -> list[dict[int, int] | None]:
        """Per stage, the joints that move with another one instead of being cropped (a stage
        entry's ``follow``, {follower name: leader name}, as indices), or None (stage 1; a stage
        without the key). At a stage s >= 2 a follower is not refined; it takes its leader's
        stage s displacement (``engine.cascade.Cascade``, ``stage_follow``): the shipped FLIC
        model's eyes follow the nose (one crop for the face instead of three).

        Raises:
            ModelError: a ``follow`` entry on stage 1 or one that is not a mapping of joint names,
                a follower the stage refines, or a leader it does not.
        """
        names = list(self.skeleton.joints)
        refined = self.stage_joints
        out: list[dict[int, int] | None] = []
        for i, s in enumerate(self.manifest.stages):
            follow = s.extra.get("follow")
            if follow is None:
                out.append(None)
                continue
            try:
                if i == 0:
                    raise ValueError("stage 1 regresses every joint")
                out.append(follow_indices(follow, names, refined[i]))
            except ValueError:
                raise ModelError(f"{self.folder}: stage {i + 1}'s 'follow' must map joints the stage does not "
                                 f"refine to joints it refines ({{follower: leader}}, names of the "
                                 f"{self.skeleton.name} skeleton) on a stage >= 2, got {follow!r}") from None
        return out

    @property
    def normalization(self) -> Normalization:
        return self.manifest.normalization

    @property
    def stage_files(self) -> list[Path]:
        """The stage checkpoints, stage 1 first (they may be absent from a runtime-only folder)."""
        return [self.folder / s.checkpoint for s in self.manifest.stages]

    @property
    def onnx_files(self) -> list[Path | None]:
        """The stage ONNX graphs the manifest names, stage 1 first (None: not exported yet)."""
        return [self.folder / s.onnx if s.onnx else None for s in self.manifest.stages]

    @property
    def scaler(self) -> dict | None:
        """The fitted face-box scaler (see engine.detection.persons), or None if the model has none."""
        return self.manifest.scaler


def read_manifest(folder: str | Path) -> ModelInfo:
    """Read and check ``folder/manifest.json``.

    Raises:
        ModelError: the folder or manifest is missing, unreadable, of another format, or lacks
            a field the runtime reads (see :meth:`Manifest.from_dict`). (Whether the stage
            files a backend needs exist is checked by that backend.)
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(f"no model at {folder}: {path} is missing")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(raw, dict) or "format" not in raw:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ModelError(f"{path} is not a {FORMAT} manifest (format={found!r})")
    return ModelInfo(folder, Manifest.from_dict(raw, str(path)))


def write_manifest(folder: str | Path, manifest: Manifest | dict) -> Path:
    """Check and write ``manifest`` to ``folder/manifest.json`` (atomically); returns its path.

    Args:
        folder: the model folder (created if missing).
        manifest: a :class:`Manifest`, or a dict with its keys (format, name, skeleton
            (Skeleton.to_dict()), sigma, input_size, normalization, preset, stages
            [{stage, checkpoint, onnx, ...}], scaler, training, val_metrics, val_protocol).
    Raises:
        ModelError: a dict that is not a valid manifest.
    """
    folder = Path(folder)
    if isinstance(manifest, dict):
        manifest = Manifest.from_dict(manifest, f"manifest for {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    from .outputs import replaced_atomically

    with replaced_atomically(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
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
        net = build_network(cfg["num_joints"], cfg["preset"], cfg["input_size"])
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    except (KeyError, RuntimeError, ValueError) as e:
        raise ModelError(f"{path} does not match preset {cfg.get('preset')!r}: {str(e).splitlines()[0]}") from None
    return net.eval()
