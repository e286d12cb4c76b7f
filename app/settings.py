"""User settings of the app, kept between runs with QSettings.

Stored under organization "deeppose", application "deeppose" (the platform's usual place:
``~/.config/deeppose/deeppose.conf`` on Linux). Setting ``DEEPPOSE_SETTINGS`` to a file path
stores them in that INI file instead (the tests use this so they never touch a user's settings).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from PyQt6.QtCore import QSettings

from ..engine.config import (
    DEFAULT_CONFIRM_HITS,
    DEFAULT_DETECT_EVERY,
    DEFAULT_RECHECK_EVERY,
    DEFAULT_WEIGHTS,
    PipelineConfig,
)
from ..engine.constants import BACKEND_CHOICES, DEFAULT_FLIP, DEFAULT_HOST, FLIP_MODES, MODELS, PACKAGE_ROOT

ORGANIZATION = "deeppose"
APPLICATION = "deeppose"


def default_record_dir() -> Path:
    """Where recordings go unless the user picks another folder: ``<repo>/out/recordings``."""
    return PACKAGE_ROOT / "out" / "recordings"


MAX_PERSONS_SETTING = 20
"""The largest "Follow at most" value the settings panel offers (0 there means everyone)."""

MAX_EVERY_SETTING = 60
"""The largest "Detect faces every" / "Recheck every" value (frames) the settings panel offers."""

MAX_CONFIRM_SETTING = 10
"""The largest "Confirm a new person after" value (detections) the settings panel offers."""

PIPELINE_SETTINGS = tuple(k for k in PipelineConfig.SETTINGS if k != "threads")   # no threads setting in the app
"""The :class:`AppSettings` fields that are pipeline options, in the conventions of
:meth:`engine.config.PipelineConfig.from_settings` (which refuses any other key)."""


@dataclass
class AppSettings:
    """What a user can change while the app runs.

    Attributes:
        weights: model folder (manifest.json + stage checkpoints).
        model: the shipped model last chosen in the model chooser, "flic" (upper body) or "lsp"
            (full body); choosing one sets ``weights`` to its folder, ``weights/NAME``.
        backend: runtime backend name, or "auto" (the fastest available).
        stages: how many cascade stages to run, 1..S; 0 = all S stages of the model.
        smooth: smooth poses across frames.
        show_boxes: draw the person boxes b0 (and faces) with the stick figures.
        max_persons: follow at most this many persons, those tracked longest (0: everyone
            found; 1: one person, e.g. the user at a webcam when in view first); 0 to
            :data:`MAX_PERSONS_SETTING`.
        record_dir: folder where Record writes its video and keypoints files.
        last_dir: folder last used in "Open video file...".
        serve: stream the keypoints live to other programs (a WebSocket server on
            ``serve_address``, engine/streaming.py).
        serve_address: HOST:PORT of that server (default 127.0.0.1:8765: this machine only).
        show_angles: draw the joint angles (elbows, shoulders, hips, knees; engine/angles.py)
            at their joints over the video, with the HUD.
        hide_unsure: do not draw joints whose confidence is below
            :data:`engine.constants.MIN_JOINT_CONFIDENCE` (models that give one, psi v2).
        rotate: find and follow people lying or upside down (``PipelineConfig.rotate``,
            the video command's ``--rotate``: the face search also in the frame turned by 90,
            180 and 270 degrees, and each person's crops turned with his roll).
        flip: flip test-time averaging, "off", "first" or "all" (``--flip``).
        track_by_pose: follow each person by his pose where the model can (trained models with
            a face scaler), checking every estimate; False: the plain face tracker
            (``--no-track-by-pose``).
        track_by_body: follow each person by his body where the model can (psi v2 models such
            as weights/body); False: by pose. Off with ``track_by_pose`` off.
        detect_every: with tracking by pose, look for new faces every N-th frame (``--detect-every``).
        recheck_every: once "Follow at most" persons are tracked, look for their faces only every
            N-th frame (``--recheck-every``).
        confirm_hits: draw a new person once found in N of his first N+2 frames (``--confirm``).
    """

    weights: str = str(DEFAULT_WEIGHTS)
    model: str = "flic"
    backend: str = "auto"
    stages: int = 0
    smooth: bool = True
    show_boxes: bool = False
    max_persons: int = 0
    record_dir: str = field(default_factory=lambda: str(default_record_dir()))
    last_dir: str = ""
    serve: bool = False
    serve_address: str = f"{DEFAULT_HOST}:8765"
    show_angles: bool = False
    rotate: bool = False
    hide_unsure: bool = True
    flip: str = DEFAULT_FLIP
    track_by_pose: bool = True
    track_by_body: bool = True
    detect_every: int = DEFAULT_DETECT_EVERY
    recheck_every: int = DEFAULT_RECHECK_EVERY
    confirm_hits: int = DEFAULT_CONFIRM_HITS

    def pipeline_settings(self) -> dict:
        """The pipeline's settings (:data:`PIPELINE_SETTINGS`), for
        :meth:`engine.config.PipelineConfig.from_settings`."""
        return {name: getattr(self, name) for name in PIPELINE_SETTINGS}


def open_qsettings() -> QSettings:
    """The QSettings store: ``$DEEPPOSE_SETTINGS`` (an INI file) when set, else the user's."""
    path = os.environ.get("DEEPPOSE_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def load_settings(qs: QSettings) -> AppSettings:
    """Read every :class:`AppSettings` field from ``qs`` (missing or malformed -> default)."""
    out = AppSettings()
    for f in fields(AppSettings):
        default = getattr(out, f.name)
        if not qs.contains(f.name):
            continue
        try:
            value = qs.value(f.name, default, type=type(default))
        except (TypeError, ValueError):
            continue
        if value is not None:
            setattr(out, f.name, value)
    if out.stages < 0:
        out.stages = 0
    out.max_persons = min(max(out.max_persons, 0), MAX_PERSONS_SETTING)
    out.detect_every = min(max(out.detect_every, 1), MAX_EVERY_SETTING)
    out.recheck_every = min(max(out.recheck_every, 1), MAX_EVERY_SETTING)
    out.confirm_hits = min(max(out.confirm_hits, 1), MAX_CONFIRM_SETTING)
    if out.flip not in FLIP_MODES:
        out.flip = AppSettings.flip
    if out.model not in MODELS:   # a name from another version: the default
        out.model = AppSettings.model
    if out.backend not in BACKEND_CHOICES:   # likewise (the pipeline config refuses it)
        out.backend = AppSettings.backend
    return out


def save_setting(qs: QSettings, name: str, value) -> None:
    """Store one field now (so a crash later does not lose it)."""
    if name not in {f.name for f in fields(AppSettings)}:
        raise KeyError(f"unknown setting {name!r}")
    qs.setValue(name, value)
    qs.sync()
