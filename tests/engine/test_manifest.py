"""The manifest as a typed schema (engine.model.Manifest): read and written in one place, checked
with one-line errors, lossless on the shipped manifest; the runtime takes the pixel
normalization from it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deeppose.engine.backends import load_cascade
from deeppose.engine.backends.base import Regressor
from deeppose.engine.cascade import Cascade
from deeppose.engine.geometry import PIXEL_MEAN, PIXEL_STD, crop_boxes
from deeppose.engine.model import FORMAT, Manifest, ModelError, Normalization, read_manifest, write_manifest


def test_shipped_manifest_round_trips_exactly(flic_weights):
    raw = json.loads((flic_weights / "manifest.json").read_text())
    info = read_manifest(flic_weights)
    m = info.manifest
    assert isinstance(m, Manifest) and m.name == "flic" and m.preset == "compact"
    assert [s.onnx for s in m.stages] == ["stage1.onnx", "stage2.onnx", "stage3.onnx"]
    assert m.normalization == Normalization((127.5,) * 3, (64.0,) * 3, "BGR")
    assert m.stages[1].extra["displacement_prior"]["mean"]          # training's fields are kept
    assert m.to_dict() == raw and list(m.to_dict()) == list(raw)
    assert Manifest.from_dict(m.to_dict()) == m


def test_write_checks_and_keeps_unknown_keys(random_model_dir, tmp_path):
    raw = read_manifest(random_model_dir).manifest.to_dict()
    raw["future_field"] = {"kept": True}
    raw.pop("format")
    path = write_manifest(tmp_path, raw)
    written = json.loads(path.read_text())
    assert written["format"] == FORMAT and written["future_field"] == {"kept": True}
    assert read_manifest(tmp_path).manifest.extra == {"future_field": {"kept": True}}
    with pytest.raises(ModelError, match="'sigma' must be a positive number"):
        write_manifest(tmp_path / "bad", {**raw, "sigma": -1})
    assert not (tmp_path / "bad" / "manifest.json").exists()


@pytest.mark.parametrize("norm,message", [
    ({"mean": [1, 2], "std": [1, 1, 1]}, "3 means and 3 positive stds"),
    ({"mean": [1, 2, 3], "std": [1, 0, 1]}, "3 means and 3 positive stds"),
    ({"mean": "abc", "std": [1, 1, 1]}, "lists of 3 numbers"),
    ({"channel_order": "GBR"}, "channel_order must be"),
    ([1, 2, 3], "'normalization' must be an object"),
])
def test_bad_normalization_is_a_one_line_error(random_model_dir, tmp_path, norm, message):
    raw = read_manifest(random_model_dir).manifest.to_dict()
    (tmp_path / "manifest.json").write_text(json.dumps({**raw, "normalization": norm}))
    with pytest.raises(ModelError) as e:
        read_manifest(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value) and "manifest.json" in str(e.value)


class Recorder(Regressor):
    """Records the inputs of stage 1 and returns the box centre for every joint."""

    name = "recorder"

    def __init__(self, k):
        super().__init__("recorder")
        self.k, self.inputs = k, []

    def regress(self, crops):
        self.inputs.append(crops.copy())
        return np.zeros((len(crops), 2 * self.k), np.float32)

    def _release(self):
        pass


def test_cascade_normalizes_crops_as_the_manifest_says(random_model_dir):
    info = read_manifest(random_model_dir)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    b0 = np.array([[80.0, 60.0, 100.0, 110.0]])
    crop = crop_boxes(image, b0, info.input_size)[0].astype(np.float32)   # (S, S, 3) BGR
    for norm in (Normalization(), Normalization((100.0, 110.0, 120.0), (50.0, 60.0, 70.0), "RGB")):
        rec = Recorder(info.skeleton.k)
        Cascade([rec], info.skeleton, info.sigma, info.input_size, normalization=norm).run(image, b0)
        chans = crop.transpose(2, 0, 1)[::-1] if norm.channel_order == "RGB" else crop.transpose(2, 0, 1)
        want = (chans - np.array(norm.mean, np.float32)[:, None, None]) / np.array(norm.std, np.float32)[:, None, None]
        assert np.allclose(rec.inputs[0][0], want, atol=1e-5)
    assert norm.mean != (PIXEL_MEAN,) * 3 and norm.std != (PIXEL_STD,) * 3


def test_load_cascade_reads_normalization_from_the_manifest(random_model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(random_model_dir, folder)
    raw = read_manifest(folder).manifest.to_dict()
    raw["normalization"] = {"mean": [0, 0, 0], "std": [255, 255, 255], "channel_order": "RGB"}
    write_manifest(folder, raw)
    image = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    b0 = np.array([[160.0, 120.0, 200.0, 220.0]])
    changed, info = load_cascade(folder, "onnxruntime", threads=1)
    assert changed.normalization == info.normalization == Normalization((0.0,) * 3, (255.0,) * 3, "RGB")
    same, _ = load_cascade(random_model_dir, "onnxruntime", threads=1)
    # Same weights, different input normalization: different poses.
    assert np.abs(changed.run(image, b0).poses - same.run(image, b0).poses).max() > 0.5


def test_stage_entries_may_name_their_input_size_and_joints(random_model_dir, tmp_path):
    """A stage entry's ``input_size``, ``joints`` (the joints a stage s >= 2 refines) and
    ``follow`` (joints moved with a refined one) reach the cascade; joints or followers on stage
    1, names the skeleton lacks, and followers the stage refines are one-line errors."""
    folder = tmp_path / "m"
    shutil.copytree(random_model_dir, folder)
    raw = json.loads((folder / "manifest.json").read_text())

    def refused(key: str, cases, match: str) -> None:
        """Each (stage, value) of ``key``, instead of stage 2's, is a one-line ModelError."""
        for stage, value in cases:
            bad = json.loads(json.dumps(raw))
            bad["stages"][1].pop(key)
            bad["stages"][stage][key] = value
            (folder / "manifest.json").write_text(json.dumps(bad))
            with pytest.raises(ModelError, match=match) as e:
                load_cascade(folder)
            assert "\n" not in str(e.value)

    assert len(raw["stages"]) >= 2
    raw["stages"][1]["joints"] = ["l_wrist", "r_wrist"]
    (folder / "manifest.json").write_text(json.dumps(raw))
    info = read_manifest(folder)
    assert info.stage_input_sizes == [220] * len(raw["stages"])
    assert info.stage_joints[:2] == [None, [2, 5]]
    cascade, _ = load_cascade(folder)
    assert cascade.stage_joints[1].tolist() == [2, 5]
    refused("joints", ((0, ["l_wrist"]), (1, ["l_knee"]), (1, []), (1, ["l_wrist", "l_wrist"])),
            "'joints' must name joints of the flic skeleton")
    raw["stages"][1]["joints"] = ["l_wrist", "r_wrist", "nose"]
    raw["stages"][1]["follow"] = {"l_eye": "nose", "r_eye": "nose"}
    (folder / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(folder).stage_follow[:2] == [None, {8: 10, 9: 10}]
    cascade, _ = load_cascade(folder)
    assert cascade.stage_follow[:2] == [None, {8: 10, 9: 10}]
    refused("follow", ((0, {"l_eye": "nose"}), (1, {"l_wrist": "nose"}), (1, {"l_eye": "l_elbow"}),
                       (1, {"l_eye": "chin"}), (1, ["l_eye"]), (1, {})),
            "'follow' must map joints the stage does not refine")
    bad = json.loads(json.dumps(raw))
    bad["stages"][1]["input_size"] = 96      # a valid side, but not the one its network takes
    (folder / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="stage 2's network takes 220-pixel crops, the manifest says 96"):
        load_cascade(folder)
    for size in (40, 96.5, "96"):
        bad = json.loads(json.dumps(raw))
        bad["stages"][1]["input_size"] = size
        (folder / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(ModelError, match="stage 2's 'input_size' must be a whole number of at least 60"):
            load_cascade(folder)
