"""The command-line conventions shared by every `main.py` command (argparse only, no heavy imports).

One meaning per option name, the same metavar and the same default everywhere:

- ``--weights DIR``: a model folder.
- ``--model NAME``: a shipped model, ``flic`` (upper body) or ``lsp`` (full body): the folder
  ``weights/NAME`` of the repository. ``--weights DIR`` wins; both given must agree (the
  folder's manifest names the same skeleton), see :func:`resolve_weights`.
- ``--backend NAME``: runtime backend, ``auto`` (default: the fastest available here),
  ``torch``, ``onnxruntime`` or ``tensorrt``.
- ``--stages N``: use (or, for ``train``, train) cascade stages 1..N.
- ``--threads N``: CPU threads, at least 1.
- ``--precision {fp16,fp32}``: TensorRT engine precision (default fp16).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .constants import (  # noqa: F401
    BACKEND_CHOICES,
    BACKENDS,
    DEFAULT_FLIP,
    DEFAULT_HOST,
    FLIP_MODES,
    MODELS,
    PRECISIONS,
    WEIGHTS_ROOT,
    backend_key,
)


def _int_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer >= ``minimum``; argparse.ArgumentTypeError (a one-line usage error,
    never a traceback) otherwise."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a one-line usage error otherwise, never a traceback)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a one-line usage error otherwise, never a traceback)."""
    return _int_at_least(text, 0)


def crop_side(text: str) -> int:
    """argparse type: a network input side in pixels, at least engine.geometry.MIN_INPUT_SIZE (a
    one-line usage error otherwise)."""
    from .geometry import MIN_INPUT_SIZE

    return _int_at_least(text, MIN_INPUT_SIZE)


class WeightsError(ValueError):
    """``--model`` / ``--weights`` that name no usable model folder; the message is one line."""


def model_folder(name: str) -> Path:
    """The folder of shipped model ``name`` (a key of :data:`MODELS`): ``weights/NAME``."""
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; shipped models are {', '.join(MODELS)}")
    return WEIGHTS_ROOT / name


def model_problem(name: str) -> str | None:
    """None if shipped model ``name`` can be loaded (its folder holds a manifest), else a one-line
    reason naming the folder (e.g. "the lsp model (full body) is not installed: weights/lsp has no
    manifest.json"). Reads no checkpoint: cheap enough for a menu."""
    folder = model_folder(name)
    where = folder.relative_to(WEIGHTS_ROOT.parent) if folder.is_relative_to(WEIGHTS_ROOT.parent) else folder
    if not folder.is_dir():
        return f"the {name} model ({MODELS[name]}) is not installed: {where} is missing"
    if not (folder / "manifest.json").is_file():
        return f"the {name} model ({MODELS[name]}) is not installed: {where} has no manifest.json"
    return None


def manifest_skeleton(folder: str | Path) -> str | None:
    """The skeleton name ("flic", "lsp") in ``folder/manifest.json``, None when unreadable (the
    model loader then says why)."""
    try:
        m = json.loads((Path(folder) / "manifest.json").read_text())
        return m["skeleton"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def add_weights(parser: argparse.ArgumentParser, default_text: str = "flic") -> None:
    """``--weights DIR`` and ``--model {flic,lsp,body}`` (read them with :func:`resolve_weights`)."""
    parser.add_argument("--weights", type=Path, metavar="DIR", default=None,
                        help="model folder (default: that of --model)")
    parser.add_argument("--model", choices=tuple(MODELS), default=None,
                        help="shipped model: flic (upper body, 11 joints), lsp (full body, 14 joints) or "
                        "body (full body and face, 17 joints, any way up, with each joint's confidence), "
                        f"the folder weights/NAME (default: {default_text})")


def resolve_weights(weights: str | Path | None, model: str | None, default: str | None = "flic") -> Path | None:
    """The model folder of ``--weights`` / ``--model``.

    Args:
        weights: ``--weights DIR`` or None.
        model: ``--model NAME`` or None.
        default: the shipped model used when neither is given (None: return None then).
    Returns:
        ``weights`` when given (it wins), else ``weights/<model or default>``.
    Raises:
        WeightsError: (one line) both given and the folder's manifest is of another skeleton
            than ``model``; or a shipped model chosen by name that is not installed.
    """
    if weights is not None:
        weights = Path(weights)
        found = manifest_skeleton(weights)
        if model is not None and found is not None and found != model:
            raise WeightsError(f"--model {model} conflicts with --weights {weights}, a {found} model: give one of them")
        return weights
    name = model or default
    if name is None:
        return None
    problem = model_problem(name)
    if problem is not None:
        raise WeightsError(problem)
    return model_folder(name)


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


def add_int8(parser: argparse.ArgumentParser, default_text: str | None = None) -> None:
    """``--int8 / --no-int8``: ONNX Runtime runs the stages' int8 copies, or their float graphs;
    neither (None): the model's default (int8 where its int8 record passes, see
    :func:`engine.backends.onnxruntime_backend.int8_record`)."""
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="ONNX Runtime: run the int8 copies of the stages (built by make onnx or quantize-int8), "
                        "or with --no-int8 the float ones (default: " + (default_text or "the stages whose int8 copies "
                        "the model's manifest records as checked on val, within 0.01 PDJ@0.2 of float: stage 3 of the "
                        "shipped models")
                        + ")")


def int8_problem(args) -> str | None:
    """None, or why ``--int8`` cannot be used with the chosen ``--backend`` (one line)."""
    if getattr(args, "int8", None) is True and backend_key(getattr(args, "backend", "auto")) not in ("auto", "onnxruntime"):
        return f"--int8 runs on ONNX Runtime, not on --backend {args.backend}"
    return None


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision {fp16,fp32}`` (default fp16): TensorRT engine precision."""
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="TensorRT engine precision (default: fp16)")


def name_problem(path, what: str) -> str | None:
    """None, or one line saying that the name of the file ``path`` is longer than its folder's
    file system takes (checked first: other checks would fail on it with a less clear error)."""
    import os
    from pathlib import Path

    from .outputs import name_max

    path = Path(path)
    size, limit = len(os.fsencode(path.name)), name_max(next((p for p in path.parents if os.path.isdir(p)), "."))
    if size > limit:
        return f"cannot write {what} {path}: file name too long ({size} bytes, at most {limit})"
    return None


def output_problem(path, what: str) -> str | None:
    """None if the file ``path`` can be written (its missing folders are created, as the
    command would), else a one-line reason. Checked by creating and removing a probe file
    beside it (``.deeppose-tmp-probe-*``, a name of its own, whatever the output's length), so
    that a bad path fails before any work (``os.access`` is not enough: it says yes to root for
    /proc, for example)."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    problem = name_problem(path, what)
    if problem:
        return problem
    if path.is_dir():
        return f"cannot write {what} {path}: it is a folder"
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"cannot write {what} {path}: {existing} is a file, not a folder"
    from .outputs import TEMP_PREFIX

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the probe's name does not grow with the output's (a name that fits must pass)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{TEMP_PREFIX}probe-", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            return f"cannot write {what} {path}: permission denied"
    except OSError as e:
        return f"cannot write {what} {path}: {e.strerror or e}"
    return None


def safe_console() -> None:
    """Make printing never fail on the console's encoding: stdout and stderr write characters
    they cannot encode (a non-ASCII file name on an ASCII or cp1252 console or file) as
    backslash escapes instead of raising UnicodeEncodeError. Called once where a command
    starts (:func:`deeppose.cli.main`, and each worker process of ``video --jobs``)."""
    import sys

    for name in ("stdout", "stderr", "__stdout__", "__stderr__"):
        stream = getattr(sys, name, None)
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):   # None (no console), not a TextIOWrapper, or closed
            pass


def split_host_port(text: str, min_port: int = 0, default_host: str = DEFAULT_HOST) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); a missing host is
    ``default_host`` (127.0.0.1).

    Raises:
        ValueError: (one line) not of that form, or the port is not a number in min_port..65535.
    """
    text = str(text).strip()
    if text.startswith("["):   # [::1]:8765
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif ":" in text:
        raise ValueError(f"write an IPv6 address in brackets, [{text}]:PORT, got {text!r}")
    else:
        host, port = "", text
    host = host.strip() or default_host
    try:
        n = int(port)
    except ValueError:
        raise ValueError(f"expected HOST:PORT with a port number, got {text!r}") from None
    if not min_port <= n <= 65535:
        raise ValueError(f"port must be in {min_port}..65535, got {n}")
    if any(c.isspace() for c in host):
        raise ValueError(f"bad host {host!r}")
    return host, n


def serve_address(text: str) -> tuple[str, int]:
    """argparse type of ``--serve``: HOST:PORT (:func:`split_host_port`; port 0 lets the system
    pick a free one), a one-line usage error otherwise."""
    try:
        return split_host_port(text, min_port=0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def osc_address(text: str) -> tuple[str, int]:
    """argparse type of ``--osc``: HOST:PORT (:func:`split_host_port`, port 1..65535), a
    one-line usage error otherwise."""
    try:
        return split_host_port(text, min_port=1)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_live_outputs(parser: argparse.ArgumentParser) -> None:
    """``--serve HOST:PORT`` (WebSocket stream of the keypoints) and ``--osc HOST:PORT`` (OSC
    messages), see engine/streaming.py and docs/KEYPOINTS.md."""
    parser.add_argument("--serve", type=serve_address, metavar="HOST:PORT", default=None,
                        help="stream the keypoints live: a WebSocket server sending each connected client the "
                        "keypoints header, then one JSON message per frame (the JSON Lines schema); HOST defaults "
                        f"to {DEFAULT_HOST} (this machine only; 0.0.0.0 serves the network), port 0 picks a free one")
    parser.add_argument("--osc", type=osc_address, metavar="HOST:PORT", default=None,
                        help="send the keypoints as OSC messages over UDP (/deeppose/frame, "
                        "/deeppose/person/<id>/<joint> x y confidence in_frame, ...; docs/KEYPOINTS.md), "
                        f"e.g. to TouchDesigner or Max; HOST defaults to {DEFAULT_HOST}")
