"""Plain test helpers shared by the test folders (tests/engine, tests/tools, tests/app,
tests/deeppose): paths to the repository and the shared data, a skip for missing data, model
folders with random weights and short cuts of videos. Importable as ``support`` (pytest's
``pythonpath`` in pyproject.toml puts tests/ on ``sys.path``); the fixtures are in
tests/conftest.py. Submodules: ``support.clips`` (small test videos made with PyAV),
``support.sigint_probe`` (SIGINT at a known moment of a subprocess), ``support.trt_standin``
(a stand-in ``tensorrt`` module)."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from deeppose.engine.constants import WEIGHTS_ROOT, data_root
from deeppose.tools.data.datasets import read_frames, walking_video

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
TEST_DATA = TESTS / "data"
DATA = data_root()
WEIGHTS_FLIC = WEIGHTS_ROOT / "flic"
WEIGHTS_LSP = WEIGHTS_ROOT / "lsp"
WEIGHTS_BODY = WEIGHTS_ROOT / "body"
WALKING = walking_video()


def make_random_model(folder: Path, stages: int = 3, skeleton_name: str = "flic", seed: int = 0,
                      face_scaler: bool | None = None) -> Path:
    """A model folder with random compact weights (tools.export.random_model.make_random_model); with
    ``face_scaler`` (default: FLIC only) a typical fitted face scaler of its skeleton."""
    from deeppose.tools.export.random_model import make_random_model as make

    return make(folder, skeleton=skeleton_name, stages=stages, seed=seed, face_scaler=face_scaler)


def require_data(*parts: str) -> Path:
    """Path under the shared data folder; skip if the shared data is not beside the repo."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p}")
    return p


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


def walking_video_frames(n: int) -> list:
    """The first ``n`` frames of walking.mp4 at full size (1280x720), (H, W, 3) uint8 BGR, decoded
    by OpenCV; skips the test without the shared data."""
    frames = read_frames(require_data("videos", "walking.mp4"), n)
    assert len(frames) == n
    return frames
