"""Readers for the original FLIC and LSP file layouts, with reproducible train / val / test splits.

FLIC (Sapp & Taskar 2013): ``examples.mat`` (struct array ``examples``, fields coords (2x29),
filepath, imgdims, istrain, istest, moviename, torsobox, ...) and ``images/``.
LSP (Johnson & Everingham 2010): ``joints.mat`` and ``images/im0001.jpg`` ...; the original
(3, 14, 2000) layout, whose flag row is 1 for an occluded joint, and LSP extended's
(14, 3, 10000) layout, whose flag row is 1 for a visible joint.

Conventions: MATLAB's 1-based pixel coordinates become 0-based (x - 1, y - 1), so that (0, 0)
is the centre of the top-left pixel; joints a dataset leaves unlabelled are NaN.

Splits:
- FLIC: ``train``/``test`` follow ``istrain``/``istest``. ``val`` is carved from ``istrain``
  by whole movies, so that near-duplicate frames of one scene never sit on both sides: movies
  are ordered by the CRC-32 of their name and taken in that order until they hold at least 10%
  of the training examples. ``train`` is the rest.
- LSP: images 1-1000 are the training half, 1001-2000 the test half (the standard split); val
  is every training image whose 1-based number ends in 0 (im0010, im0020, ..., 100 images).
  LSP extended: all 10000 images are training; val the same rule.
- ``trainval``: the whole training half (train + val), for a final model only.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from deeppose.engine.constants import data_root
from deeppose.engine.skeletons import FLIC, FLIC_COORD_ROWS, LSP, Skeleton

SPLITS = ("train", "val", "test", "trainval")
VAL_FRACTION = 0.10


class DatasetError(RuntimeError):
    """A dataset that cannot be read: missing files, a bad layout or absent images (one line)."""


@dataclass
class PoseExample:
    """One annotated person in one image.

    Attributes:
        image_path: the image file.
        pose: (k, 2) float64 pose vector in pixels, 0-based; NaN for unlabelled joints.
        visible: (k,) bool, labelled and not flagged occluded.
        image_size: (width, height) in pixels.
        group: FLIC movie name ("" for LSP); examples of one group share a split.
        index: 0-based index of the example in the annotation file.
        torso_box: FLIC's annotated torso box (x1, y1, x2, y2), 0-based pixels; None for LSP.
    """

    image_path: Path
    pose: np.ndarray
    visible: np.ndarray
    image_size: tuple[int, int]
    group: str
    index: int
    torso_box: np.ndarray | None = None


@dataclass
class PoseDataset:
    """The examples of one split of one dataset."""

    name: str
    split: str
    skeleton: Skeleton
    root: Path
    examples: list[PoseExample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def poses(self) -> np.ndarray:
        """(N, k, 2) ground-truth pose vectors in pixels (NaN = unlabelled)."""
        return np.stack([e.pose for e in self.examples]) if self.examples else np.zeros((0, self.skeleton.k, 2))


def default_data_root(name: str) -> Path:
    """``$DEEPPOSE_DATA/<name>`` if set, else ``../shared/data/<name>`` beside the repository
    (:func:`engine.constants.data_root`)."""
    return data_root() / name


def load_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 BGR.

    Raises:
        DatasetError: the file is missing or cannot be decoded (the message names the path).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image missing: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image: {path}")
    return image


def load_dataset(name: str, root: str | Path | None = None, split: str = "train") -> PoseDataset:
    """Read one split of FLIC or LSP.

    Args:
        name: "flic" or "lsp" (LSP extended is recognised by its joints.mat layout).
        root: folder holding examples.mat / joints.mat and images/ (default: default_data_root).
        split: "train", "val", "test" or "trainval" (see the module docstring).
    Returns:
        The split's :class:`PoseDataset`.
    Raises:
        DatasetError: unknown name or split, a missing annotation file, or images of the split
            absent from ``root/images`` (the message names the first missing path).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root) if root is not None else default_data_root(name)
    if name == "flic":
        ds = _load_flic(root, split)
    elif name == "lsp":
        ds = _load_lsp(root, split)
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose flic or lsp")
    missing = [e.image_path for e in ds.examples if not e.image_path.is_file()]
    if missing:
        raise DatasetError(f"{name} {split} split: {len(missing)} of {len(ds)} images are absent, "
                           f"first {missing[0]} (the held-out test images are not shipped)")
    return ds


def _mat_str(v) -> str:
    return str(np.asarray(v).ravel()[0]) if np.asarray(v).size else ""


def _mat_num(v) -> float:
    return float(np.asarray(v).ravel()[0])


def _load_flic(root: Path, split: str) -> PoseDataset:
    path = root / "examples.mat"
    if not path.is_file():
        raise DatasetError(f"FLIC annotations missing: {path}")
    try:
        examples = scipy.io.loadmat(str(path))["examples"].ravel()
    except Exception as e:  # scipy raises several types for bad files
        raise DatasetError(f"cannot read {path}: {e}") from None
    rows = np.asarray(FLIC_COORD_ROWS) - 1
    all_items = []
    for i, ex in enumerate(examples):
        coords = np.asarray(ex["coords"], dtype=np.float64)  # (2, 29), 1-based
        pose = coords[:, rows].T - 1.0
        dims = np.asarray(ex["imgdims"]).ravel()  # (h, w, 3)
        torso = np.asarray(ex["torsobox"], dtype=np.float64).ravel() - 1.0
        all_items.append((
            PoseExample(
                image_path=root / "images" / _mat_str(ex["filepath"]),
                pose=pose,
                visible=np.isfinite(pose).all(axis=1),
                image_size=(int(dims[1]), int(dims[0])),
                group=_mat_str(ex["moviename"]),
                index=i,
                torso_box=torso,
            ),
            bool(_mat_num(ex["istrain"])),
            bool(_mat_num(ex["istest"])),
        ))
    train_items = [e for e, tr, _ in all_items if tr]
    val_groups = _flic_val_movies(train_items)
    chosen = {
        "train": [e for e in train_items if e.group not in val_groups],
        "val": [e for e in train_items if e.group in val_groups],
        "trainval": train_items,
        "test": [e for e, _, te in all_items if te],
    }[split]
    return PoseDataset("flic", split, FLIC, root, chosen)


def _flic_val_movies(train: list[PoseExample]) -> set[str]:
    """Movies held out as val: ordered by CRC-32 of the name, taken until >= 10% of examples."""
    counts: dict[str, int] = {}
    for e in train:
        counts[e.group] = counts.get(e.group, 0) + 1
    chosen: set[str] = set()
    total = 0
    for movie in sorted(counts, key=lambda m: (zlib.crc32(m.encode()), m)):
        if total >= VAL_FRACTION * len(train):
            break
        chosen.add(movie)
        total += counts[movie]
    return chosen


def _load_lsp(root: Path, split: str) -> PoseDataset:
    path = root / "joints.mat"
    if not path.is_file():
        raise DatasetError(f"LSP annotations missing: {path}")
    try:
        joints = np.asarray(scipy.io.loadmat(str(path))["joints"], dtype=np.float64)
    except Exception as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if joints.shape[:2] == (3, 14):  # original LSP: flag 1 = occluded
        xy = joints[:2].transpose(2, 1, 0)  # (N, 14, 2)
        visible = joints[2].T == 0
        extended = False
    elif joints.shape[:2] == (14, 3):  # LSP extended: flag 1 = visible
        xy = joints[:, :2].transpose(2, 0, 1)
        visible = joints[:, 2].T == 1
        extended = True
    else:
        raise DatasetError(f"{path}: joints has shape {joints.shape}, expected (3, 14, N) or (14, 3, N)")
    n = xy.shape[0]
    digits = 5 if extended else 4
    train_idx = list(range(n)) if extended else list(range(min(n, 1000)))
    test_idx = [] if extended else list(range(1000, n))
    is_val = lambda i: (i + 1) % 10 == 0  # noqa: E731  (1-based number ends in 0)
    idx = {
        "train": [i for i in train_idx if not is_val(i)],
        "val": [i for i in train_idx if is_val(i)],
        "trainval": train_idx,
        "test": test_idx,
    }[split]
    examples = []
    for i in idx:
        image_path = root / "images" / f"im{i + 1:0{digits}d}.jpg"
        pose = xy[i] - 1.0
        examples.append(PoseExample(image_path=image_path, pose=pose, visible=visible[i] & np.isfinite(pose).all(1),
                                    image_size=_image_size(image_path), group="", index=i))
    return PoseDataset("lsp", split, LSP, root, examples)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; (0, 0) if the file is absent (reported later)."""
    if not path.is_file():
        return (0, 0)
    from PIL import Image  # reads the header only

    with Image.open(path) as im:
        return im.size


TURNS = (0, 90, 180, 270)
"""Quarter turns that :func:`turn_dataset` applies (degrees, counterclockwise as seen on screen)."""


def turn_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` (H, W, C) turned counterclockwise by ``degrees`` (a multiple of 90), exactly
    (no resampling)."""
    return np.ascontiguousarray(np.rot90(image, degrees // 90))


def turn_dataset(dataset: PoseDataset, degrees: int) -> PoseDataset:
    """The dataset with every image turned counterclockwise by ``degrees`` (0, 90, 180 or 270):
    poses, image sizes and FLIC torso boxes carried along; read its images through
    :func:`turn_image`. Test material for people lying and upside down with known ground truth.

    Raises:
        ValueError: ``degrees`` is not one of :data:`TURNS`.
    """
    import dataclasses

    from deeppose.engine.detection.search import turn_points

    if degrees not in TURNS:
        raise ValueError(f"turn must be one of {TURNS} degrees, got {degrees}")
    examples = []
    for e in dataset.examples:
        size = e.image_size if degrees in (0, 180) else (e.image_size[1], e.image_size[0])
        pose = turn_points(e.pose, degrees // 90, e.image_size[0], e.image_size[1])
        examples.append(dataclasses.replace(e, pose=pose, image_size=size,
                                            torso_box=None if degrees else e.torso_box))
    return dataclasses.replace(dataset, examples=examples)


def walking_video() -> Path:
    """The shared walking.mp4 (``videos/`` of :func:`engine.constants.data_root`)."""
    return data_root() / "videos" / "walking.mp4"


def read_frames(video: Path, count: int = 40, start: int = 0) -> list:
    """Up to ``count`` consecutive BGR frames of ``video`` from frame ``start`` ([] if unreadable)."""
    import cv2
    cap = cv2.VideoCapture(str(video))
    frames = []
    try:
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames
