"""The shipped FLIC model: loads, fits the size budget, and finds joints on real FLIC frames."""
import json

import numpy as np
import pytest

from deeppose.engine.backends import load_cascade
from deeppose.engine.model import read_manifest
from conftest import require_data
from deeppose.tools.datasets import load_dataset, load_image
from deeppose.tools.metrics import pdj


def test_manifest_is_complete_and_weights_fit_the_budget(flic_weights):
    info = read_manifest(flic_weights)
    m = info.manifest.to_dict()
    assert len(m["stages"]) == 3 and m["sigma"] == 1.0 and m["input_size"] == 220
    assert m["skeleton"]["joints"] == list(info.skeleton.joints) and m["preset"] in ("compact", "paper")
    for key in ("scale_x", "scale_y", "offset_x", "offset_y"):
        assert m["scaler"][key] == json.loads((flic_weights / "scaler.json").read_text())[key]
    assert set(m["val_metrics"]) == {"stage1", "stage2", "stage3"}
    # Every refinement stage improves PDJ@0.1 on val (the condition for shipping a stage).
    p01 = [m["val_metrics"][f"stage{s}"]["pdj@0.1"]["mean"] for s in (1, 2, 3)]
    assert p01[0] < p01[1] < p01[2], p01
    # The runtime's ONNX files ship with the model, and the whole folder stays under 60 MB.
    assert [p.name for p in info.onnx_files] == ["stage1.onnx", "stage2.onnx", "stage3.onnx"]
    assert all(p.is_file() for p in info.onnx_files)
    shipped = sum(f.stat().st_size for f in flic_weights.iterdir() if f.is_file() and ".engine" not in f.name)
    assert shipped < 60e6


def test_shipped_cascade_finds_joints_on_real_flic_frames(flic_weights):
    """~20 real FLIC training frames with detected faces: most joints within PDJ@0.2 at stage 3."""
    require_data("flic", "examples.mat")
    from deeppose.tools.person_boxes import example_b0

    cascade, info = load_cascade(flic_weights)
    ds = load_dataset("flic", None, "train")
    ds.examples = ds.examples[::170][:20]
    b0, sources = example_b0(ds, info.scaler, missed="frame", progress=False)
    poses = np.stack([cascade.run(load_image(e.image_path), b0[i][None]).stage_poses[:, 0]
                      for i, e in enumerate(ds.examples)], axis=1)  # (S, N, k, 2)
    per_joint = pdj(poses[-1], ds.poses(), ds.skeleton, [0.2]).at(0.2)
    assert (per_joint >= 0.5).sum() >= 8, dict(zip(ds.skeleton.joints, per_joint.round(2)))
    assert pdj(poses[-1], ds.poses(), ds.skeleton, [0.2]).mean_at(0.2) >= 0.6
