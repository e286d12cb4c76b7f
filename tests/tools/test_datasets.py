"""The FLIC and LSP readers (tools/data/datasets.py) on the real shared data."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from deeppose.engine.skeletons import FLIC, FLIC_COORD_ROWS, LSP
from deeppose.tools.data.datasets import DatasetError, default_data_root, load_dataset, load_image

FLIC_ROOT = default_data_root("flic")
LSP_ROOT = default_data_root("lsp")
pytestmark = pytest.mark.skipif(not (FLIC_ROOT / "examples.mat").is_file() or not (LSP_ROOT / "joints.mat").is_file(),
                                reason=f"shared data not found at {FLIC_ROOT.parent}")


@pytest.fixture(scope="module")
def flic_mat():
    return scipy.io.loadmat(str(FLIC_ROOT / "examples.mat"))["examples"].ravel()


@pytest.fixture(scope="module")
def lsp_joints():
    return scipy.io.loadmat(str(LSP_ROOT / "joints.mat"))["joints"]


@pytest.fixture(scope="module")
def flic():
    return {s: load_dataset("flic", None, s) for s in ("train", "val", "trainval")}


@pytest.fixture(scope="module")
def lsp():
    return {s: load_dataset("lsp", None, s) for s in ("train", "val", "trainval")}


def _ids(ds):
    return [e.index for e in ds.examples]


def test_flic_split_sizes_and_disjoint_val(flic, flic_mat):
    istrain = np.array([int(np.ravel(e["istrain"])[0]) for e in flic_mat])
    assert istrain.sum() == 3987
    assert len(flic["trainval"]) == 3987
    assert sorted(_ids(flic["trainval"])) == np.flatnonzero(istrain).tolist()
    train, val = set(_ids(flic["train"])), set(_ids(flic["val"]))
    assert not train & val
    assert train | val == set(_ids(flic["trainval"]))
    assert 0.08 * 3987 <= len(val) <= 0.25 * 3987
    # val is carved by whole movies: no movie on both sides
    assert not {e.group for e in flic["train"].examples} & {e.group for e in flic["val"].examples}
    assert all(ds.skeleton is FLIC and ds.name == "flic" for ds in flic.values())


def test_val_split_is_reproducible(flic, lsp):
    assert _ids(load_dataset("flic", FLIC_ROOT, "val")) == _ids(flic["val"])
    assert _ids(load_dataset("lsp", LSP_ROOT, "val")) == _ids(lsp["val"])


def test_lsp_split_sizes(lsp):
    assert len(lsp["trainval"]) == 1000
    assert sorted(_ids(lsp["trainval"])) == list(range(1000))
    train, val = set(_ids(lsp["train"])), set(_ids(lsp["val"]))
    assert not train & val and train | val == set(range(1000))
    assert len(val) == 100
    assert lsp["train"].skeleton is LSP


def test_flic_coordinates_are_zero_based_and_all_labelled(flic, flic_mat):
    rows = np.asarray(FLIC_COORD_ROWS) - 1
    ds = flic["trainval"]
    raw = np.stack([np.asarray(flic_mat[e.index]["coords"], dtype=np.float64)[:, rows].T for e in ds.examples])
    poses = ds.poses()
    assert poses.shape == (3987, 11, 2)
    np.testing.assert_array_equal(poses, raw - 1.0)
    # a known example, by hand: the first one's left shoulder (row 1 of coords)
    first = next(e for e in ds.examples if e.index == 0)
    x1, y1 = np.asarray(flic_mat[0]["coords"], dtype=np.float64)[:, 0]
    assert first.pose[FLIC.index("l_shoulder")].tolist() == [x1 - 1.0, y1 - 1.0]
    assert first.image_path.name == str(np.ravel(flic_mat[0]["filepath"])[0])
    # this copy labels all 11 FLIC joints of every training example
    assert np.isfinite(poses).all()
    assert all(e.visible.all() for e in ds.examples)
    # and they lie in the frame (0-based pixel centres span [-0.5, size - 0.5])
    inside = (poses >= -0.5) & (poses <= np.array([540, 360]) - 0.5)
    assert inside.all(axis=-1).mean() > 0.999


def test_lsp_coordinates_and_occlusion_flags(lsp, lsp_joints):
    ds = lsp["trainval"]
    idx = np.array(_ids(ds))
    np.testing.assert_array_equal(ds.poses(), lsp_joints[:2, :, idx].transpose(2, 1, 0) - 1.0)
    visible = np.stack([e.visible for e in ds.examples])
    flags = lsp_joints[2, :, idx]  # (N, 14): 1 = occluded in the original LSP
    np.testing.assert_array_equal(visible, flags == 0)
    assert 0.03 < (~visible).mean() < 0.12  # about 7% occluded
    assert np.isfinite(ds.poses()).all()  # occluded joints keep their (guessed) position


@pytest.mark.parametrize("name,count", [("flic", 4), ("lsp", 4)])
def test_images_load_with_the_annotated_size(name, count, flic, lsp):
    ds = {"flic": flic, "lsp": lsp}[name]["trainval"]
    step = len(ds) // count
    for e in ds.examples[::step][:count]:
        image = load_image(e.image_path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert (image.shape[1], image.shape[0]) == e.image_size
        assert image.std() > 5  # a real picture, not a blank


def test_missing_or_corrupt_image_raises_dataset_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(DatasetError, match="nope.jpg"):
        load_image(missing)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match="corrupt.jpg"):
        load_image(corrupt)


@pytest.mark.parametrize("name", ["flic", "lsp"])
def test_test_split_without_images_raises_a_clear_error(name):
    with pytest.raises(DatasetError) as info:
        load_dataset(name, None, "test")
    msg = str(info.value)
    assert "\n" not in msg and "test" in msg and "absent" in msg


def test_bad_root_name_or_split(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="examples.mat"):
        load_dataset("flic", tmp_path, "train")
    with pytest.raises(DatasetError, match="joints.mat"):
        load_dataset("lsp", tmp_path, "train")
    with pytest.raises(DatasetError, match="split"):
        load_dataset("flic", None, "training")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mpii", None, "train")
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path))
    assert default_data_root("lsp") == tmp_path / "lsp"
