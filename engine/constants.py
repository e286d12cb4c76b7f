"""Names and paths every part of deeppose shares: backends, flip modes, shipped models, folders.

No imports beyond the standard library, so that any module (the CLI's argument parsing, the
cascade, the backends, the app) can take them without importing another part of the project.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds engine/, tools/, app/ and weights/: the repository root in a checkout,
``site-packages/deeppose`` when installed."""
WEIGHTS_ROOT = PACKAGE_ROOT / "weights"
"""The ``weights/`` folder, holding one folder per shipped model and the face detector's files."""
FACE_MODEL_DIR = WEIGHTS_ROOT / "face"
"""The BlazeFace models shipped with the package."""
DEFAULT_MODEL = "flic"
"""The shipped model used when none is named."""

BACKENDS = ("torch", "onnxruntime", "tensorrt")
"""Runtime backend names."""
BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
BACKEND_CHOICES = ("auto",) + BACKENDS + tuple(BACKEND_ALIASES)
"""Every name accepted by ``--backend``."""
BACKEND_OPTIONS = {
    "torch": ("device", "fp16", "threads"),
    "onnxruntime": ("threads", "spinning", "int8"),
    "tensorrt": ("precision", "device"),
}
"""The options each runtime backend takes (``engine.backends.create_regressors``); ``auto``
takes those of every backend and hands the chosen one its own."""
MODELS = {"flic": "upper body", "lsp": "full body", "body": "full body and face, any way up, with confidence"}
"""The shipped models (``weights/NAME``) and what each estimates: FLIC's 11 upper-body joints,
LSP's 14 full-body joints, or psi v2's 17 body joints (LSP's and the eyes and nose, trained on
FLIC and LSP together) with each joint's confidence and a presence score, tracked by body."""
PSI_V2_PRESETS = ("mobilenet_v2", "efficientnet_lite0")
"""The psi v2 network presets (``engine.network.BACKBONE_PRESETS``): pretrained backbones whose
stage 1 also gives each joint's confidence and a person-presence score, so that the pipeline
tracks persons by body (``engine.pipeline.PosePipeline``'s ``track_by_body``)."""
PRECISIONS = ("fp16", "fp32")
"""TensorRT engine precisions."""
DEFAULT_HOST = "127.0.0.1"
"""Where ``--serve`` listens and ``--osc`` sends unless HOST:PORT names another host: this machine
only. Binding another address (``0.0.0.0``, a network interface) is the user's explicit choice."""
FLIP_MODES = ("off", "first", "all")
"""Flip test-time averaging modes of engine.cascade.Cascade: none, stage 1 only, every stage."""
DEFAULT_FLIP = "off"
"""No flip test-time averaging by default (measured in docs/flic_ablation.md)."""


def backend_key(name: str) -> str:
    """A ``--backend`` name in canonical form (``"ort"`` -> ``"onnxruntime"``), or the lower-cased
    name itself when it is no alias; whether it is known is the caller's check (BACKEND_CHOICES)."""
    key = str(name).strip().lower()
    return BACKEND_ALIASES.get(key, key)


def data_root() -> Path:
    """The shared data folder: ``$DEEPPOSE_DATA`` if set, else ``../shared/data`` beside the
    package root (the project's layout)."""
    base = os.environ.get("DEEPPOSE_DATA")
    return Path(base) if base else PACKAGE_ROOT.parent / "shared" / "data"

MIN_JOINT_CONFIDENCE = 0.2
"""Joints whose confidence (psi v2 models) is below this are not drawn by default (nor the limbs
touching them). The body model's stage 1 on LSP val (whole image as b0): 15% of the joints fall
below it, 92% of them beyond PDJ@0.2 of the truth; the joints drawn are right in 50% against
44% for all. Models without confidence (psi v1) draw every joint."""

B0Source = Literal["face", "pose", "held", "frame", "body"]
"""Where a person's b0 came from: "face" (a face detected in this frame, enlarged by the model's
scaler), "pose" (tracking: from the person's previous pose), "held" (his last good b0, kept while
he is missed, or with tracking by body the b0 of his last shown estimate, where the box around his
pose read nobody), "frame" (the whole frame: the full-frame fallback or the LSP protocol), "body"
(found without a face: the box around the pose the whole-frame search gave, psi v2)."""
B0_SOURCES: tuple[str, ...] = B0Source.__args__
"""The values of :data:`B0Source`."""

