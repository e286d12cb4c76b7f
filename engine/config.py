"""The pipeline's options in one typed, validated object: what :class:`engine.pipeline.PosePipeline`
is built from.

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.pipeline import PosePipeline

    config = PipelineConfig.from_args(args)              # the video command, the benchmark (argparse)
    config = PipelineConfig.from_settings(settings)      # the app (its settings, app/settings.py)
    config = PipelineConfig("weights/body", max_persons=1).replace(threads=2)   # the library, tests
    with PosePipeline(config) as pipeline:               # the one place that builds the objects
        result = pipeline.process(frame)

A :class:`PipelineConfig` is frozen and checked when made: a bad value or an impossible
combination raises ValueError (one line), an unknown option TypeError naming it. Options that
depend on the model (tracking by pose or by body, verification, the full-frame fallback) are None
by default, "the model's"; :meth:`PipelineConfig.resolved` says what they become for a model,
and :attr:`engine.pipeline.PosePipeline.config` is the resolved config of a running pipeline.

Imports stay light (no backend library, no model): the app's settings take their defaults here.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constants import (
    BACKEND_OPTIONS,
    BACKENDS,
    DEFAULT_FLIP,
    DEFAULT_MODEL,
    FLIP_MODES,
    PRECISIONS,
    PSI_V2_PRESETS,
    WEIGHTS_ROOT,
    backend_key,
)
from .smoothing import OneEuroParams
from .tracking.verify import VerifyParams

if TYPE_CHECKING:
    from .model import ModelInfo

DEFAULT_WEIGHTS = WEIGHTS_ROOT / DEFAULT_MODEL
"""The default model folder, ``weights/flic`` at the repository root."""

DEFAULT_DETECT_EVERY = 5
"""Face detection every N-th frame while every person is tracked by pose (see PosePipeline).
Measured on walking.mp4 (144 frames, shipped model, onnxruntime, 2-core CPU under load; hand
counts in tests/data/walking_persons.json): N = 1, 3, 5, 10 ran the detector on 144, 95, 78, 62
frames (the others are forced by new or lost persons) for 71, 42, 40, 30 ms per frame of
detection, at precision 1.0 and recall 0.60, 0.59, 0.60, 0.59 with one id for the walker in
each. N = 5 keeps newcomers found within a fraction of a second at most of the saving."""

DEFAULT_RECHECK_EVERY = 10
"""Face detection every N-th frame once ``max_persons`` persons are tracked by pose (see
PosePipeline): no newcomer is looked for then, the detector only finds the tracked faces again
(which anchors their b0 and keeps their tracks alive). Measured on walking.mp4 (30 fps) with
``--max-persons 1 --detect-every N`` before this setting existed (shipped model, 2-core CPU):
N = 5, 10, 15 ran the detector on 30, 16, 11 frames, and each drew the walker in 142 of 144
frames with one id at precision 1.000; against N = 5 the joints moved by a median of 0.005 diam
(p90 0.015, max 0.066) with N = 10 and 0.006 (p90 0.020, max 0.142) with N = 15. The pipeline
also rechecks at least three times per tracker's ``max_undetected_seconds`` (1 s by default),
which at 30 fps is every 10th frame: larger N change nothing there."""

DEFAULT_CONFIRM_HITS = 3
"""A new person is confirmed once detected in this many of his first ``confirm_hits + 2`` frames
(:class:`engine.tracking.tracker.PersonTracker`'s default); live he is drawn from then on, in a
video file from his first frame (:class:`engine.frames.Lookahead`)."""

LIVE_OPTIONS = ("stages", "smooth", "max_persons", "detect_every", "recheck_every", "flip")
"""The options a running pipeline takes without being rebuilt (:meth:`engine.pipeline.PosePipeline.apply`);
any other change needs a new pipeline (:meth:`PipelineConfig.needs_rebuild`)."""

_BACKEND_FIELDS = ("int8", "precision", "device", "fp16", "spinning")
"""The backend-only options (``threads`` is the face detector's too)."""


@dataclass(frozen=True)
class PipelineConfig:
    """Every option of :class:`engine.pipeline.PosePipeline` (frozen; checked when made).

    None means "the default", for the model-dependent options "the model's" (see :meth:`resolved`).

    Attributes:
        weights: model folder (manifest.json and the stage files); default ``weights/flic``.
        backend: "auto" (the fastest available here), "torch", "onnxruntime" or "tensorrt"
            (aliases such as "ort" are stored in canonical form).
        stages: cascade stages run per frame, 1..S (None: all S; checked against the model when built).
        flip: flip test-time averaging, "off", "first" or "all" (:class:`engine.cascade.Cascade`).
        rotate: rotated b0: crops turned with each person's roll, the face search also turned.
        max_persons: follow at most this many persons, those tracked longest (None: everyone found).
        threads: CPU threads of the backend (where it takes them) and of the face detector (None: theirs).
        smooth: One-Euro smoothing of each person's joints across frames (off in still-image mode).
        smoothing: the One-Euro parameters (:class:`engine.smoothing.OneEuroParams`).
        detect_every: with tracking by pose, run the face detector every N-th frame (N >= 1).
        recheck_every: once ``max_persons`` are tracked, run it only every N-th frame (N >= 1).
        track_by_pose: the next b0 from the eyes and nose of each pose (None: for trained models
            with a face scaler and face joints, and with tracking by body).
        track_by_body: the next b0 from the box around each pose, kept by presence (psi v2 models
            only; None: on for them unless ``track_by_pose`` is False).
        verify: check every estimate against its face (None: as ``track_by_pose``).
        verify_params: the thresholds of that check (:class:`engine.tracking.verify.VerifyParams`).
        full_frame_fallback: nobody found, estimate one person on the whole frame (None: for LSP
            models not tracked by body).
        min_face_confidence: face detector threshold in [0, 1] (None: the one the scaler was fitted with).
        confirm_hits: draw a new person once found in this many of his first N+2 frames (None: 3;
            still-image mode: 1, the only value it takes).
        still: still-image mode (:class:`engine.api.Pose`): every frame an image on its own.
        int8: ONNX Runtime: True the stages' int8 copies, False the float graphs, a tuple of stage
            numbers those stages in int8 (None: the model's int8 record). Backend onnxruntime or auto.
        precision: TensorRT engine precision, "fp16" or "fp32" (None: fp16). Backend tensorrt or auto.
        device: "cpu" or "cuda" (None: the backend's choice). Backend torch, tensorrt or auto.
        fp16: PyTorch on CUDA in half precision (None: on CUDA). Backend torch or auto.
        spinning: ONNX Runtime's thread spinning (None: off). Backend onnxruntime or auto.
    Raises:
        ValueError: (one line) a bad value, e.g. ``stages=0``, ``flip="twice"``; or an impossible
            combination: ``track_by_body=True`` with ``track_by_pose=False``, ``still`` with
            ``confirm_hits`` other than 1, a backend option the named backend does not take
            (``int8=True`` with ``backend="torch"``).
        TypeError: an unknown option (the dataclass constructor; :meth:`replace`, :meth:`from_args`
            and :meth:`from_settings` name it).
    """

    weights: Path = DEFAULT_WEIGHTS
    backend: str = "auto"
    stages: int | None = None
    flip: str = DEFAULT_FLIP
    rotate: bool = False
    max_persons: int | None = None
    threads: int | None = None
    smooth: bool = True
    smoothing: OneEuroParams = field(default_factory=OneEuroParams)
    detect_every: int = DEFAULT_DETECT_EVERY
    recheck_every: int = DEFAULT_RECHECK_EVERY
    track_by_pose: bool | None = None
    track_by_body: bool | None = None
    verify: bool | None = None
    verify_params: VerifyParams = field(default_factory=VerifyParams)
    full_frame_fallback: bool | None = None
    min_face_confidence: float | None = None
    confirm_hits: int | None = None
    still: bool = False
    int8: bool | tuple[int, ...] | None = None
    precision: str | None = None
    device: str | None = None
    fp16: bool | None = None
    spinning: bool | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.weights, (str, Path)):
            raise ValueError(f"weights must be a model folder path, got {self.weights!r}")
        set_(self, "weights", Path(self.weights))
        if not isinstance(self.backend, str):
            raise ValueError(f"backend must be a name, got {self.backend!r}")
        set_(self, "backend", backend_key(self.backend))
        if isinstance(self.int8, (list, tuple)):
            set_(self, "int8", tuple(self.int8))
        for name, minimum, optional in (("stages", 1, True), ("max_persons", 1, True), ("threads", 1, True),
                                        ("detect_every", 1, False), ("recheck_every", 1, False),
                                        ("confirm_hits", 1, True)):
            set_(self, name, _whole(name, getattr(self, name), minimum, optional))
        self.validate()

    def validate(self) -> None:
        """Check every value and combination (run when the config is made).

        Raises:
            ValueError: one line naming the option and what it takes.
        """
        from .backends import backend_option_problem

        if self.backend not in ("auto",) + BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(('auto',) + BACKENDS)}, got {self.backend!r}")
        if self.flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {', '.join(FLIP_MODES)}, got {self.flip!r}")
        for name in ("rotate", "smooth", "still"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("track_by_pose", "track_by_body", "verify", "full_frame_fallback", "fp16", "spinning"):
            if not (getattr(self, name) is None or isinstance(getattr(self, name), bool)):
                raise ValueError(f"{name} must be True, False or None, got {getattr(self, name)!r}")
        if not isinstance(self.smoothing, OneEuroParams):
            raise ValueError(f"smoothing must be an OneEuroParams, got {self.smoothing!r}")
        if not isinstance(self.verify_params, VerifyParams):
            raise ValueError(f"verify_params must be a VerifyParams, got {self.verify_params!r}")
        c = self.min_face_confidence
        if c is not None and (isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0.0 <= c <= 1.0):
            raise ValueError(f"min_face_confidence must be a number from 0 to 1, got {c!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError(f"device must be a name such as 'cpu' or 'cuda', got {self.device!r}")
        if isinstance(self.int8, tuple):
            if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in self.int8):
                raise ValueError(f"int8 must be True, False, None or stage numbers >= 1, got {self.int8!r}")
        elif not (self.int8 is None or isinstance(self.int8, bool)):
            raise ValueError(f"int8 must be True, False, None or stage numbers >= 1, got {self.int8!r}")
        if self.track_by_body is True and self.track_by_pose is False:
            raise ValueError("tracking by body takes each next b0 from the pose: it cannot go with track_by_pose=False")
        if self.still and self.confirm_hits not in (None, 1):
            raise ValueError(f"a still image is seen once: confirm_hits must be 1 (or None) in still-image mode, "
                             f"got {self.confirm_hits}")
        for name in _BACKEND_FIELDS:
            problem = backend_option_problem(self.backend, name, getattr(self, name))
            if problem:
                raise ValueError(problem)

    # -- making and changing ------------------------------------------------------------
    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with ``changes`` (checked as a new config).

        Raises:
            TypeError: an option that does not exist (named).
            ValueError: see the class.
        """
        _check_names(changes, "option")
        return dataclasses.replace(self, **changes)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every option's name, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_args(cls, args, **overrides: Any) -> PipelineConfig:
        """The config of a command's parsed arguments (argparse), the command line's conventions
        (engine/cli_args.py, engine/video_cli.py's tracking options).

        Read where present (an absent or None attribute keeps the default): ``--weights`` and
        ``--model`` (:func:`engine.cli_args.resolve_weights`), ``--backend``, ``--stages``,
        ``--smooth``, ``--threads``, ``--int8``, ``--precision``, ``--flip``, ``--rotate``,
        ``--max-persons``, ``--detect-every``, ``--recheck-every``, ``--confirm`` (confirm_hits)
        and ``--no-track-by-pose`` (track_by_pose and verify off). Other attributes are the
        command's own and are not read.

        Args:
            args: an ``argparse.Namespace``.
            **overrides: options set as given instead (their attributes are not read), e.g. the
                benchmark's ``backend=`` (its ``--backend`` is a list).
        Raises:
            TypeError: an override that is no option (named).
            ValueError: see the class; engine.cli_args.WeightsError (a ValueError) for
                ``--model``/``--weights`` that name no usable model.
        """
        _check_names(overrides, "option")
        ns = vars(args)
        values: dict[str, Any] = {}
        if "weights" not in overrides and ("weights" in ns or "model" in ns):
            from .cli_args import resolve_weights

            values["weights"] = resolve_weights(ns.get("weights"), ns.get("model"))
        for name in ("backend", "stages", "smooth", "threads", "int8", "precision", "flip", "rotate", "max_persons",
                     "detect_every", "recheck_every", "confirm_hits"):
            dest = "confirm" if name == "confirm_hits" else name   # --confirm
            if name not in overrides and ns.get(dest) is not None:
                values[name] = ns[dest]
        if "track_by_pose" not in overrides and ns.get("track_by_pose") is False:
            values["track_by_pose"] = False
            if "verify" not in overrides:
                values["verify"] = False
        values.update(overrides)
        return cls(**values)

    SETTINGS = ("weights", "backend", "stages", "smooth", "max_persons", "rotate", "flip", "track_by_pose",
                "track_by_body", "detect_every", "recheck_every", "confirm_hits", "threads")
    """The keys :meth:`from_settings` takes."""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PipelineConfig:
        """The config of the app's settings (:class:`app.settings.AppSettings`, kept as plain
        ints, bools and strings), their conventions: ``stages`` 0 = all, ``max_persons`` 0 =
        everyone, ``threads`` 0 = the default, ``track_by_pose`` and ``track_by_body`` True =
        "where the model can" (None here) and False = off (tracking by pose off also turns the
        check of every estimate off, as the video command's ``--no-track-by-pose``). Keys left
        out keep the defaults.

        Args:
            settings: a mapping with keys among :attr:`SETTINGS`.
        Raises:
            ValueError: a key that is no pipeline setting (named), or a bad value (see the class).
        """
        unknown = [k for k in settings if k not in cls.SETTINGS]
        if unknown:
            raise ValueError(f"unknown pipeline setting {unknown[0]!r}; the settings are: {', '.join(cls.SETTINGS)}")
        values = dict(settings)
        for name in ("stages", "max_persons", "threads"):
            if name in values and values[name] == 0:
                values[name] = None
        for name in ("track_by_pose", "track_by_body"):
            if name in values:
                values[name] = None if values[name] else False
        if values.get("track_by_pose") is False:
            values["verify"] = False
        return cls(**values)

    # -- the model's defaults ------------------------------------------------------------
    def resolved(self, info: ModelInfo) -> PipelineConfig:
        """This config with every model-dependent None replaced by what model ``info`` gets,
        as :class:`engine.pipeline.PosePipeline` runs it:

        - ``track_by_body``: on for psi v2 models (presence scores) unless ``track_by_pose`` is False;
        - ``track_by_pose``: with tracking by body, or for trained models (validation metrics
          in the manifest) with a face scaler and eyes and nose in the skeleton;
        - ``verify``: as ``track_by_pose``, and only for skeletons with eyes and nose or tracked by body;
        - ``full_frame_fallback``: on for LSP models not tracked by body;
        - ``confirm_hits``: 3 (still-image mode: 1); ``stages``: all S.

        Raises:
            ValueError: ``track_by_body`` for a model that is not psi v2; ``track_by_pose``
                for a model without a face scaler or face joints; ``stages`` beyond S.
        """
        from .detection.persons import face_joint_indices

        preset = info.manifest.preset
        track_by_body = self.track_by_body
        if track_by_body is None:
            track_by_body = preset in PSI_V2_PRESETS and self.track_by_pose is not False
        if track_by_body and preset not in PSI_V2_PRESETS:
            raise ValueError(f"tracking by body needs a psi v2 model (presence scores); {self.weights} is "
                             f"preset {preset!r}")
        has_scaler = info.scaler is not None
        has_face_joints = len(face_joint_indices(info.skeleton)) == 3
        track_by_pose = self.track_by_pose
        if track_by_pose is None:
            track_by_pose = track_by_body or (has_scaler and has_face_joints and bool(info.manifest.val_metrics))
        if track_by_pose and not track_by_body and not (has_scaler and has_face_joints):
            raise ValueError(f"tracking by pose needs a face scaler and eyes and nose in the skeleton ({self.weights})")
        verify = bool(track_by_pose if self.verify is None else self.verify) and (has_face_joints or track_by_body)
        fallback = self.full_frame_fallback
        if fallback is None:   # tracking by body has its own whole-frame search
            fallback = info.skeleton.name == "lsp" and not track_by_body
        confirm = 1 if self.still else (DEFAULT_CONFIRM_HITS if self.confirm_hits is None else self.confirm_hits)
        num_stages = len(info.manifest.stages)
        stages = num_stages if self.stages is None else self.stages
        if not 1 <= stages <= num_stages:
            raise ValueError(f"stages must be in 1..{num_stages} for {self.weights}, got {self.stages}")
        return dataclasses.replace(self, track_by_body=bool(track_by_body), track_by_pose=bool(track_by_pose),
                                   verify=verify, full_frame_fallback=bool(fallback), confirm_hits=confirm,
                                   stages=stages)

    # -- parts ----------------------------------------------------------------------------
    def backend_options(self) -> dict[str, Any]:
        """The options for :func:`engine.backends.create_regressors`: ``threads`` where the
        backend takes it (auto, torch, onnxruntime; the face detector takes it in any case) and
        the backend options given (not None)."""
        opts: dict[str, Any] = {}
        if self.threads is not None and (self.backend == "auto" or "threads" in BACKEND_OPTIONS[self.backend]):
            opts["threads"] = self.threads
        opts.update({name: getattr(self, name) for name in _BACKEND_FIELDS if getattr(self, name) is not None})
        return opts

    def needs_rebuild(self, other: PipelineConfig) -> bool:
        """Whether a pipeline built from ``other`` must be rebuilt to run this config: an option
        outside :data:`LIVE_OPTIONS` differs."""
        return any(getattr(self, name) != getattr(other, name)
                   for name in self.option_names() if name not in LIVE_OPTIONS)


def _whole(name: str, value: Any, minimum: int, optional: bool) -> int | None:
    """``value`` as an int >= ``minimum`` (None passes when ``optional``); ValueError otherwise."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}{' or None' if optional else ''}, got {value!r}")
    return int(value)


def _check_names(values: Mapping[str, Any], what: str) -> None:
    """TypeError naming the first key of ``values`` that is no :class:`PipelineConfig` option."""
    names = PipelineConfig.option_names()
    for key in values:
        if key not in names:
            raise TypeError(f"unknown pipeline {what} {key!r}; the options are: {', '.join(names)}")
