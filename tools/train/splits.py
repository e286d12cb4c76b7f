"""The training and val splits of a run, held in memory with each person's b0: FLIC or LSP by the
paper's b0 protocol, other datasets' persons added with ``--extra-data``, and psi v2's ``body``
union of both; the face scalers that place b0."""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deeppose.engine.geometry import diam
from deeppose.engine.skeletons import get_skeleton
from deeppose.tools.data.datasets import DatasetError, PoseDataset, load_dataset, load_image
from deeppose.tools.train.config import TrainConfig

log = logging.getLogger("deeppose.train")


class TrainingData:
    """A split held in memory: decoded images, ground-truth pose vectors and b0 boxes."""

    def __init__(self, ds: PoseDataset, b0: np.ndarray, sources: list[str]):
        self.ds = ds
        self.poses = ds.poses()                       # (N, k, 2) pixels
        self.b0 = np.asarray(b0, dtype=np.float64)   # (N, 4)
        self.sources = sources
        self.diam = diam(self.poses, ds.skeleton)    # (N,)
        self._images: dict[Path, np.ndarray] = {}
        for e in tqdm(ds.examples, desc=f"loading {ds.name} {ds.split} images", unit="img", leave=False, disable=None):
            if e.image_path not in self._images:
                self._images[e.image_path] = load_image(e.image_path)

    def __len__(self) -> int:
        return len(self.ds)

    def image(self, i: int) -> np.ndarray:
        """The decoded image of example i, (H, W, 3) uint8 BGR."""
        return self._images[self.ds.examples[i].image_path]

    def image_by_path(self, path: Path) -> np.ndarray:
        """The decoded image at ``path`` (one of the split's images)."""
        return self._images[path]


def load_split(cfg: TrainConfig, split: str, limit: int | None, scaler: dict | None) -> TrainingData:
    from deeppose.tools.data.person_boxes import example_b0

    if cfg.dataset == "body":
        return body_split(split, limit)
    ds = load_dataset(cfg.dataset, cfg.data, split)
    if limit:
        ds.examples = ds.examples[:limit]
    # Training may build b0 from the labelled eyes and nose where the face detector missed;
    # val never uses ground truth for b0 (the full frame, as at run time).
    b0, sources = example_b0(ds, scaler, missed="joints" if split == "train" else "frame")
    counts = {s: sources.count(s) for s in sorted(set(sources))}
    log.info("%s %s: %d persons, b0 sources %s", cfg.dataset, split, len(ds), counts)
    if split == "train" and cfg.extra_data:
        extra_scaler = scaler if cfg.dataset == "flic" else run_time_scaler(cfg)
        if extra_scaler is None:
            raise DatasetError(f"--extra-data for an LSP model needs the full-body scaler at {cfg.out / 'scaler.json'} "
                               "(it places a body box b0 on the other dataset's faces): run `python main.py "
                               "fit-scaler --dataset lsp` first")
        for name in cfg.extra_data:
            extra, extra_b0, extra_sources = extra_split(name, ds.skeleton, extra_scaler, limit)
            ds = dataclasses.replace(ds, name=f"{ds.name}+{name}", examples=ds.examples + extra.examples)
            b0 = np.concatenate([b0, extra_b0])
            sources = sources + [f"{name}:{s}" for s in extra_sources]
    return TrainingData(ds, b0, sources)


BODY_PARTS = ("flic", "lsp")
"""The datasets of psi v2's union skeleton ``body``, in the order their persons are concatenated."""


def body_split(split: str, limit: int | None) -> TrainingData:
    """psi v2's ``body`` data: FLIC's and LSP's ``split`` relabelled into the union skeleton (each
    dataset labels its own joints; the others are NaN and out of the loss), with each dataset's
    own b0 protocol: FLIC's detected face through the shipped FLIC scaler (weights/flic), LSP's
    full image (the paper's). ``limit`` applies to each dataset. Sources are "flic:face",
    "lsp:frame" and so on, which tell the parts apart for their val figures.

    Raises:
        DatasetError: a dataset is missing, or the FLIC scaler is.
    """
    from deeppose.engine.constants import WEIGHTS_ROOT
    from deeppose.tools.data.person_boxes import example_b0

    skeleton = get_skeleton("body")
    scaler_path = WEIGHTS_ROOT / "flic" / "scaler.json"
    if not scaler_path.is_file():
        raise DatasetError(f"no FLIC face scaler at {scaler_path}: run `python main.py fit-scaler` first")
    scalers = {"flic": json.loads(scaler_path.read_text()), "lsp": None}
    examples, b0, sources, first = [], [], [], None
    for name in BODY_PARTS:
        ds = load_dataset(name, None, split)
        if limit:
            ds.examples = ds.examples[:limit]
        boxes, srcs = example_b0(ds, scalers[name], missed="joints" if split == "train" else "frame")
        log.info("%s %s: %d persons for body, b0 sources %s", name, split, len(ds), dict(Counter(srcs)))
        keep = np.isfinite(boxes).all(axis=1)
        examples += _relabel(ds, skeleton, name, keep)
        b0.append(boxes[keep])
        sources += [f"{name}:{s}" for s, k in zip(srcs, keep) if k]
        first = first or ds
    ds = dataclasses.replace(first, name="body", skeleton=skeleton, examples=examples)
    return TrainingData(ds, np.concatenate(b0), sources)


def _relabel(ds, skeleton, name: str, keep: np.ndarray) -> list:
    """The examples of ``ds`` whose ``keep`` is set, relabelled into ``skeleton`` by joint name:
    joints ``ds`` does not label are NaN (out of the loss) and not visible; groups get the
    prefix ``name:``."""
    idx = [ds.skeleton.joints.index(j) if j in ds.skeleton.joints else -1 for j in skeleton.joints]
    out = []
    for e, k in zip(ds.examples, keep):
        if k:
            pose = np.array([e.pose[i] if i >= 0 else (np.nan, np.nan) for i in idx], dtype=np.float64)
            vis = np.array([bool(e.visible[i]) if i >= 0 else False for i in idx])
            out.append(dataclasses.replace(e, pose=pose, visible=vis, group=f"{name}:{e.group}"))
    return out


def extra_split(name: str, skeleton, scaler: dict, limit: int | None):
    """Another dataset's train split relabelled into ``skeleton``: the union of joints, where the
    joints it does not label are NaN and so out of the loss (as the paper trains on FLIC + LSP).

    b0 follows the model's run-time protocol, the detected face enlarged by the model's scaler:
    - LSP persons for the FLIC model: the face matched to the neck and head top, or the face
      they imply (:func:`tools.data.person_boxes.head_face_b0`);
    - FLIC persons for the LSP model (``scaler`` = the full-body scaler): the matched face, or
      the face implied by the labelled eyes and nose, enlarged to a body box that reaches below
      the frame where the legs are out of view (:func:`tools.data.person_boxes.example_b0`);

    Returns:
        (dataset with ``skeleton``, b0 (N, 4) pixels, sources (N,)); persons without a b0 are dropped.
    """
    from deeppose.tools.data.person_boxes import example_b0, head_face_b0

    other = load_dataset(name, None, "train")
    if limit:
        other.examples = other.examples[:limit]
    if name == "flic":
        b0, sources = example_b0(other, scaler, missed="joints")
        log.info("%s train: %d persons as extra data, b0 sources %s", name, len(other), dict(Counter(sources)))
    else:
        b0, sources, params = head_face_b0(other, scaler)
        log.info("%s train: %d persons as extra data, b0 sources %s, head-face fit %s", name, len(other),
                 dict(Counter(sources)), params)
    keep = np.isfinite(b0).all(axis=1)
    examples = _relabel(other, skeleton, name, keep)
    return (dataclasses.replace(other, skeleton=skeleton, examples=examples), b0[keep],
            [s for s, k in zip(sources, keep) if k])


def run_time_scaler(cfg: TrainConfig) -> dict | None:
    """The scaler the manifest records for run time (video, app): FLIC's training one; for LSP
    the full-body scaler in ``--out``/scaler.json (``fit-scaler --dataset lsp``) when there is one,
    which training does not use (b0 is the full image there)."""
    if cfg.dataset == "flic":
        return training_scaler(cfg)
    path = cfg.out / "scaler.json"
    return json.loads(path.read_text()) if path.is_file() else None


def training_scaler(cfg: TrainConfig) -> dict | None:
    """The scaler of training's b0: FLIC's from ``--out``/scaler.json; None for LSP."""
    if cfg.dataset != "flic":
        return None  # LSP: b0 is the full image (paper, Sec. 4.1)
    path = cfg.out / "scaler.json"
    if not path.is_file():
        raise DatasetError(f"no face scaler at {path}: run `python main.py fit-scaler` first")
    return json.loads(path.read_text())
