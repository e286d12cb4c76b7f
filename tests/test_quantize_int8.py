"""int8 ONNX Runtime stages (tools/quantize_int8.py, ``--int8``; issue 10 part 4): built from
training crops, loaded only when asked for, refused with a one-line error when missing."""
from __future__ import annotations

import numpy as np
import pytest

import main
from deeppose.engine.backends import BackendError, create_regressors
from deeppose.engine.cascade import Cascade
from deeppose.engine.model import read_manifest
from deeppose.tools.benchmark import read_frames
from deeppose.tools.random_model import make_random_model

from conftest import WALKING, require_data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_random_model(tmp_path_factory.mktemp("int8") / "model", stages=2, seed=3)


def test_missing_int8_stages_are_a_one_line_error(model_dir):
    with pytest.raises(BackendError) as e:
        create_regressors(read_manifest(model_dir), "onnxruntime", int8=True)
    assert "stage1.int8.onnx is missing" in str(e.value) and "quantize-int8" in str(e.value)
    assert "\n" not in str(e.value)


def test_int8_needs_onnxruntime(capsys, tmp_path):
    rc = main.main(["video", str(tmp_path / "x.mp4"), "--int8", "--backend", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--int8 runs on ONNX Runtime" in err[0], err


def test_quantized_stages_load_and_follow_the_float_ones(model_dir):
    require_data("flic")
    from deeppose.tools.quantize_int8 import quantize_model

    written = quantize_model(model_dir, examples=4)
    assert [p.name for p in written] == ["stage1.int8.onnx", "stage2.int8.onnx"]
    info = read_manifest(model_dir)
    float_regs = create_regressors(info, "onnxruntime", threads=1)
    int8_regs = create_regressors(info, "onnxruntime", threads=1, int8=True)
    assert "int8" in int8_regs[0].description and "int8" not in float_regs[0].description
    meta = int8_regs[0].metadata
    assert "int8" in meta["quantization"]
    assert meta["checkpoint_sha256"] == float_regs[0].metadata["checkpoint_sha256"]   # staleness check covers it
    frame = read_frames(WALKING, 1, start=60)[0]
    b0 = np.array([[640.0, 380.0, 300.0, 600.0]])
    poses = [Cascade(r, info.skeleton, info.sigma, info.input_size).run(frame, b0).stage_poses for r in
             (float_regs, int8_regs)]
    assert not np.array_equal(poses[0], poses[1])   # really another graph
    # Quantization noise only: the joints stay within a few percent of the 600 px box.
    assert np.abs(poses[0] - poses[1]).max() < 0.05 * 600
