"""The command-line conventions shared by every `main.py` command (argparse only, no heavy imports).

One meaning per option name, the same metavar and the same default everywhere:

- ``--weights DIR``: a model folder.
- ``--backend NAME``: runtime backend, ``auto`` (default: the fastest available here),
  ``torch``, ``onnxruntime`` or ``tensorrt``.
- ``--stages N``: use (or, for ``train``, train) cascade stages 1..N.
- ``--threads N``: CPU threads, at least 1.
- ``--precision {fp16,fp32}``: TensorRT engine precision (default fp16).
"""
from __future__ import annotations

import argparse

BACKENDS = ("torch", "onnxruntime", "tensorrt")
"""Runtime backend names (engine.backends reads them from here, so that `--help` stays light)."""
BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
BACKEND_CHOICES = ("auto",) + BACKENDS + tuple(BACKEND_ALIASES)
"""Every name accepted by ``--backend``."""
PRECISIONS = ("fp16", "fp32")
FLIP_MODES = ("off", "first", "all")
"""Flip test-time averaging modes of engine.cascade.Cascade: none, stage 1 only, every stage."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a one-line usage error otherwise, never a traceback)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_backend(parser: argparse.ArgumentParser, default: str | None = "auto",
                default_text: str = "auto, the fastest one available here") -> None:
    """``--backend NAME`` (default auto)."""
    parser.add_argument("--backend", default=default, choices=BACKEND_CHOICES, metavar="NAME",
                        help=f"runtime backend: auto, torch, onnxruntime or tensorrt (default: {default_text})")


def add_flip(parser: argparse.ArgumentParser, default: str) -> None:
    """``--flip {off,first,all}``: flip test-time averaging of the cascade."""
    parser.add_argument("--flip", choices=FLIP_MODES, default=default,
                        help="flip test-time averaging: crops also run mirrored and the two are averaged, at stage 1 "
                        "only (first: one more crop per person) or every stage (all: twice the network work) "
                        f"(default: {default})")


def add_stages(parser: argparse.ArgumentParser, what: str = "run") -> None:
    """``--stages N``: cascade stages 1..N (default all)."""
    parser.add_argument("--stages", type=positive_int, metavar="N", default=None,
                        help=f"cascade stages to {what}: 1..N (default: all of the model's)")


def add_threads(parser: argparse.ArgumentParser, default_text: str = "the backend's default") -> None:
    """``--threads N`` (N >= 1)."""
    parser.add_argument("--threads", type=positive_int, metavar="N", default=None,
                        help=f"CPU threads for inference (default: {default_text})")


def add_int8(parser: argparse.ArgumentParser) -> None:
    """``--int8``: ONNX Runtime runs the stages' int8 copies (``quantize-int8``); off by default."""
    parser.add_argument("--int8", action="store_true",
                        help="ONNX Runtime: run the int8 copies of the stages (build them with quantize-int8; "
                        "off by default until their accuracy is checked with evaluate --int8)")


def int8_problem(args) -> str | None:
    """None, or why ``--int8`` cannot be used with the chosen ``--backend`` (one line)."""
    if getattr(args, "int8", False) and getattr(args, "backend", "auto") not in ("auto", "onnxruntime", "ort", "onnx"):
        return f"--int8 runs on ONNX Runtime, not on --backend {args.backend}"
    return None


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision {fp16,fp32}`` (default fp16): TensorRT engine precision."""
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="TensorRT engine precision (default: fp16)")


def output_problem(path, what: str) -> str | None:
    """None if the file ``path`` can be written (its missing folders are created, as the
    command would), else a one-line reason. Checked by creating and removing a probe file
    beside it, so that a bad path fails before any work (``os.access`` is not enough: it says
    yes to root for /proc, for example)."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return f"cannot write {what} {path}: it is a folder"
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"cannot write {what} {path}: {existing} is a file, not a folder"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            return f"cannot write {what} {path}: permission denied"
    except OSError as e:
        return f"cannot write {what} {path}: {e.strerror or e}"
    return None
