"""pack-data: a compact copy of FLIC and LSP whose annotations still fit its frames."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from deeppose.tools.data import pack
from deeppose.tools.data.datasets import load_dataset

FIELDS = ("poselet_hit_idx", "moviename", "coords", "filepath", "imgdims", "currframe", "torsobox", "istrain",
          "istest")


def _fake_flic(root: Path) -> np.ndarray:
    """A FLIC folder in the shared layout: two persons in one 200x120 frame, and a test example
    whose frame is held out (not there). Returns the 1-based coords (2, 29) of the first person."""
    (root / "images").mkdir(parents=True)
    frame = np.zeros((120, 200, 3), np.uint8)
    frame[40:80, 60:140] = (0, 128, 255)
    cv2.imwrite(str(root / "images" / "movie-a-00001.jpg"), frame)
    rng = np.random.default_rng(0)
    examples = np.zeros((1, 3), dtype=[(f, "O") for f in FIELDS])
    first = None
    for i, (name, train) in enumerate((("movie-a-00001.jpg", 1), ("movie-a-00001.jpg", 1), ("movie-b-00009.jpg", 0))):
        coords = np.full((2, 29), np.nan)
        coords[:, [0, 1, 2, 3, 4, 5, 6, 9, 12, 13, 16]] = rng.uniform(5, 110, (2, 11))
        first = coords if first is None else first
        ex = examples[0, i]
        ex["poselet_hit_idx"], ex["moviename"], ex["coords"] = np.zeros((1, 0)), np.array([name[:7]]), coords
        ex["filepath"], ex["imgdims"] = np.array([name]), np.array([[120, 200, 3]], float)
        ex["currframe"], ex["torsobox"] = np.array([[1.0]]), np.array([[50.0, 30.0, 150.0, 100.0]])
        ex["istrain"], ex["istest"] = np.array([[train]], float), np.array([[1 - train]], float)
    scipy.io.savemat(str(root / "examples.mat"), {"examples": examples})
    return first


def test_pack_flic_scales_each_frame_and_its_annotations_together(tmp_path):
    coords = _fake_flic(tmp_path / "src")
    assert pack.pack_flic(tmp_path / "src", tmp_path / "out", 0.5, 80) == 1   # one frame; the test frame is not there
    before = load_dataset("flic", tmp_path / "src", "trainval").examples
    after = load_dataset("flic", tmp_path / "out", "trainval").examples
    assert len(after) == len(before) == 2
    assert after[0].image_path.name == "movie-a-00001.webp" and after[0].image_size == (100, 60)
    assert cv2.imread(str(after[0].image_path)).shape == (60, 100, 3)
    # pixel centres onto pixel centres: (x + 0.5) * s - 0.5 in the loader's 0-based pixels
    np.testing.assert_allclose(after[0].pose, (before[0].pose + 0.5) * 0.5 - 0.5)
    np.testing.assert_allclose(after[0].torso_box, (before[0].torso_box + 0.5) * 0.5 - 0.5)
    assert np.isfinite(coords).sum() == 2 * np.isfinite(after[0].pose).all(1).sum()
    # the orange block lands where it should in the smaller frame
    small = cv2.imread(str(after[0].image_path))
    assert small[30, 50, 2] > 200 and small[10, 10].max() < 30


def test_pack_data_writes_flic_lsp_and_a_face_cache_for_a_machine_without_litert(tmp_path):
    _fake_flic(tmp_path / "data" / "flic")
    (tmp_path / "data" / "lsp" / "images").mkdir(parents=True)
    scipy.io.savemat(str(tmp_path / "data" / "lsp" / "joints.mat"), {"joints": np.zeros((3, 14, 1))})
    cv2.imwrite(str(tmp_path / "data" / "lsp" / "images" / "im0001.jpg"), np.zeros((50, 40, 3), np.uint8))
    import main

    out = tmp_path / "pack"
    assert main.main(["pack-data", str(out), "--data", str(tmp_path / "data"), "--scale", "0.5"]) == 0
    assert (out / "lsp" / "joints.mat").is_file() and (out / "lsp" / "images" / "im0001.jpg").is_file()
    cache = np.load(out / "cache" / "faces_flic_full_tiles.npz")
    assert json.loads(str(cache["meta"]))["runtime"] == "mediapipe"
    assert sorted(cache["keys"].tolist()) == ["images/movie-a-00001.webp"]   # keyed by the packed frames
    assert not (tmp_path / "pack.part").exists()


def test_pack_data_refuses_bad_options_and_leaves_nothing_when_the_data_is_missing(tmp_path, capsys):
    import main

    (tmp_path / "taken").mkdir()
    assert main.main(["pack-data", str(tmp_path / "taken")]) == 2
    assert main.main(["pack-data", str(tmp_path / "new"), "--scale", "1.5"]) == 2
    assert main.main(["pack-data", str(tmp_path / "new"), "--data", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("pack-data: error: ") for line in err)
    assert "FLIC annotations missing" in err[-1]
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.part").exists()


@pytest.mark.parametrize("x", [1.0, 10.0, 540.0])
def test_scale_points_maps_pixel_centres_of_one_based_coordinates(x):
    # 1-based pixel i has its centre at i; its 0-based centre i - 1 maps to (i - 1 + 0.5) * s - 0.5
    assert pack.scale_points(np.array([x]), 0.75)[0] == pytest.approx((x - 1 + 0.5) * 0.75 - 0.5 + 1)
