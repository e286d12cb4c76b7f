"""Helpers shared by the ONNX Runtime and TensorRT backends (and the build-time tools):
file checksums, the per-user cache folder, and the graph's tensor names."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

INPUT_NAME = "crops"
"""Name of every stage graph's input: float32 (B, 3, S, S) crops (S: the stage's crop side)."""
OUTPUT_NAME = "coords"
"""Name of every stage graph's output: float32 (B, 2k) normalized joint coordinates."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes; raises OSError when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir(folder: str | Path, kind: str) -> Path:
    """Fallback cache for a model folder that is not writable: $XDG_CACHE_HOME/deeppose/<kind>/<id>
    (``kind``: e.g. "engines")."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deeppose" / kind
    folder = Path(folder).resolve()
    return root / f"{folder.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


def is_writable(folder: str | Path) -> bool:
    """Whether files can be created in ``folder``."""
    return os.access(folder, os.W_OK)
