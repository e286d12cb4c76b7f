"""Shared fixtures: paths to the shared data and a model folder with random weights."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DEEPPOSE_DATA", REPO.parent / "shared" / "data"))
WEIGHTS_FLIC = REPO / "weights" / "flic"
WEIGHTS_LSP = REPO / "weights" / "lsp"
WALKING = DATA / "videos" / "walking.mp4"


def make_random_model(folder: Path, stages: int = 3, skeleton_name: str = "flic", seed: int = 0,
                      face_scaler: bool | None = None) -> Path:
    """A model folder with random compact weights (tools.export.random_model.make_random_model); with
    ``face_scaler`` (default: FLIC only) a typical fitted face scaler of its skeleton."""
    from deeppose.tools.export.random_model import make_random_model as make

    return make(folder, skeleton=skeleton_name, stages=stages, seed=seed, face_scaler=face_scaler)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A 3-stage FLIC model folder with random weights (shapes as the shipped model)."""
    return make_random_model(tmp_path_factory.mktemp("random_model"))


@pytest.fixture(scope="session")
def flic_weights() -> Path:
    """The shipped FLIC model folder; skips while it is not trained yet."""
    if not (WEIGHTS_FLIC / "manifest.json").is_file():
        pytest.skip("weights/flic not trained yet")
    return WEIGHTS_FLIC


@pytest.fixture(scope="session")
def lsp_weights() -> Path:
    """The shipped full-body (LSP) model folder; skips while it is not installed."""
    if not (WEIGHTS_LSP / "manifest.json").is_file():
        pytest.skip("weights/lsp is not installed")
    return WEIGHTS_LSP


def require_data(*parts: str) -> Path:
    """Path under the shared data folder; skip if the shared data is not beside the repo."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def cut_video(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` frames of ``src`` written with OpenCV's mp4v writer (same size and fps)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(n):
        ok, frame = cap.read()
        assert ok
        out.write(frame)
    out.release()
    cap.release()
    return dst
