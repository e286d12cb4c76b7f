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


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads not counted); at least 1.

    Reads the core/package ids of the CPUs in the process's affinity mask from
    /proc/cpuinfo (Linux); elsewhere falls back to ``os.cpu_count()``.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        cores: set[tuple[str, str]] = set()
        proc = phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in list(f) + [""]:
                if not line.strip():
                    if proc is not None and (allowed is None or proc in allowed):
                        cores.add((phys or "0", core if core is not None else str(proc)))
                    proc = phys = core = None
                    continue
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    proc = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
        if cores:
            return len(cores)
    except (OSError, ValueError):
        pass
    return max(1, len(allowed) if allowed else (os.cpu_count() or 1))
