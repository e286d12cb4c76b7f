"""A compact copy of the training data, for a machine the full data cannot travel to.

The lent GPU machine (docs/TRAINING.md) gets the working tree and at most 64 MiB in all: the
repository's tracked files take about 49 MB, FLIC's frames 129 MB. ``python main.py pack-data
OUT`` writes OUT/flic and OUT/lsp in the layout of the shared data folder (so ``DEEPPOSE_DATA=OUT``
trains on it unchanged):

- FLIC: every frame downscaled by ``--scale`` (area averaging) and stored as WebP at
  ``--quality``; ``examples.mat`` rewritten to match (``coords``, ``torsobox``, ``imgdims``,
  ``filepath``), as the shared copy was made from the 720x480 originals;
- LSP: ``joints.mat`` and the images copied as they are (7.4 MB);
- OUT/cache: the FLIC face detections of the packed frames, made here with the face detector's
  ``mediapipe`` runtime (the runtime the trainer picks where LiteRT is not installed; the GPU
  machine's package list has neither), so that the trainer there finds its b0 without running a
  face detector: copy them into the repository's ``cache/`` before training.

The frames' file names change extension (``.webp``), so a face cache of the full-size frames is
never taken for the packed ones (the cache is keyed by image path).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# numpy, OpenCV and scipy are imported where used: every command's module is imported to build
# the command line, and a Ctrl-C inside their native initialization must stay a clean exit 130

FLIC_FIELDS_SCALED = ("coords", "torsobox")


def scale_points(points, scale: float):
    """MATLAB 1-based pixel coordinates (array of any shape) of an image resized by ``scale``:
    pixel centres map onto pixel centres, x' = (x - 0.5) * scale + 0.5 (NaN stays NaN). Returns a
    float64 array of the same shape."""
    import numpy as np

    return (np.asarray(points, dtype=np.float64) - 0.5) * scale + 0.5


def pack_flic(src: Path, dst: Path, scale: float, quality: int) -> int:
    """Write the packed FLIC copy of ``src`` (examples.mat, images/) into ``dst``; returns the
    number of frames written. Raises DatasetError when ``src`` has no FLIC annotations or a frame
    cannot be read."""
    import cv2
    import numpy as np
    import scipy.io

    from deeppose.tools.data.datasets import DatasetError, load_image

    path = src / "examples.mat"
    if not path.is_file():
        raise DatasetError(f"FLIC annotations missing: {path}")
    mat = scipy.io.loadmat(str(path))
    examples = mat["examples"]
    (dst / "images").mkdir(parents=True, exist_ok=True)
    done = 0
    for ex in examples.ravel():
        name = str(np.asarray(ex["filepath"]).ravel()[0])
        new = str(Path(name).with_suffix(".webp"))
        h, w = (int(v) for v in np.asarray(ex["imgdims"]).ravel()[:2])
        nh, nw = round(h * scale), round(w * scale)
        for field in FLIC_FIELDS_SCALED:
            ex[field] = scale_points(ex[field], scale)
        ex["imgdims"] = np.array([[nh, nw, 3]], dtype=np.asarray(ex["imgdims"]).dtype)
        ex["filepath"] = np.array([new])
        image, out = src / "images" / name, dst / "images" / new
        if not image.is_file() or out.is_file():   # the held-out test frames are not there; shared frames once
            continue
        small = cv2.resize(load_image(image), (nw, nh), interpolation=cv2.INTER_AREA)
        if not cv2.imwrite(str(out), small, [cv2.IMWRITE_WEBP_QUALITY, int(quality)]):
            raise DatasetError(f"cannot write {out}")
        done += 1
    scipy.io.savemat(str(dst / "examples.mat"), {"examples": examples}, do_compression=True)
    return done


def pack_lsp(src: Path, dst: Path) -> int:
    """Copy LSP's joints.mat and images/ from ``src`` into ``dst``; returns the number of images."""
    from deeppose.tools.data.datasets import DatasetError

    if not (src / "joints.mat").is_file():
        raise DatasetError(f"LSP annotations missing: {src / 'joints.mat'}")
    (dst / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "joints.mat", dst / "joints.mat")
    images = sorted((src / "images").glob("*.jpg"))
    for p in images:
        shutil.copy2(p, dst / "images" / p.name)
    return len(images)


def pack_faces(root: Path, cache: Path) -> int:
    """Detect and cache the faces of the packed FLIC frames (``root``/flic) in ``cache`` with the
    ``mediapipe`` runtime; returns the number of examples."""
    from deeppose.tools.data.datasets import load_dataset
    from deeppose.tools.data.person_boxes import detect_dataset_faces

    return len(detect_dataset_faces(load_dataset("flic", root / "flic", "trainval"), cache_dir=cache,
                                    progress=sys.stderr.isatty(), runtime="mediapipe"))


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `main.py pack-data`."""
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write (must not exist)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="the data folder to pack (default: $DEEPPOSE_DATA or ../shared/data)")
    parser.add_argument("--scale", type=float, default=0.75, metavar="F",
                        help="FLIC frames' new size as a fraction of the old (default: 0.75)")
    parser.add_argument("--quality", type=int, default=80, metavar="N", help="WebP quality 1-100 (default: 80)")
    parser.add_argument("--no-faces", action="store_true", help="do not detect and cache the packed frames' faces")


def run(args: argparse.Namespace) -> int:
    """Pack; 2 with a one-line error on bad options, 1 if the data cannot be read."""
    from deeppose.engine.constants import data_root
    from deeppose.tools.data.datasets import DatasetError

    if not 0.0 < args.scale <= 1.0 or not 1 <= args.quality <= 100:
        print("pack-data: error: --scale must be in (0, 1] and --quality in 1..100", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"pack-data: error: {args.out} exists; give a new folder", file=sys.stderr)
        return 2
    src = args.data or data_root()
    part = args.out.with_name(args.out.name + ".part")   # a failed pack leaves no folder that looks whole
    shutil.rmtree(part, ignore_errors=True)
    try:
        frames = pack_flic(src / "flic", part / "flic", args.scale, args.quality)
        images = pack_lsp(src / "lsp", part / "lsp")
        examples = 0 if args.no_faces else pack_faces(part, part / "cache")
    except DatasetError as e:
        print(f"pack-data: error: {e}", file=sys.stderr)
        shutil.rmtree(part, ignore_errors=True)
        return 1
    part.rename(args.out)
    faces = "" if args.no_faces else f", faces of {examples} FLIC examples cached in {args.out / 'cache'}"
    print(f"pack-data: {args.out}: FLIC {frames} frames at {args.scale:g}x, WebP {args.quality}; LSP {images} images"
          f"{faces}; {folder_size(args.out) / 1e6:.1f} MB")
    return 0
