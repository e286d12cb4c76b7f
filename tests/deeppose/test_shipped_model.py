"""The shipped models: they load, fit the size budget, and find joints on real FLIC and LSP images."""
import json

import numpy as np

from deeppose.engine.backends import load_cascade
from deeppose.engine.model import read_manifest
from deeppose.tools.data.datasets import load_dataset, load_image
from deeppose.tools.eval.metrics import pdj
from support import require_data


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
    from deeppose.tools.data.person_boxes import example_b0

    cascade, info = load_cascade(flic_weights)
    ds = load_dataset("flic", None, "train")
    ds.examples = ds.examples[::170][:20]
    b0, sources = example_b0(ds, info.scaler, missed="frame", progress=False)
    poses = np.stack([cascade.run(load_image(e.image_path), b0[i][None]).stage_poses[:, 0]
                      for i, e in enumerate(ds.examples)], axis=1)  # (S, N, k, 2)
    per_joint = pdj(poses[-1], ds.poses(), ds.skeleton, [0.2]).at(0.2)
    assert (per_joint >= 0.5).sum() >= 8, dict(zip(ds.skeleton.joints, per_joint.round(2)))
    assert pdj(poses[-1], ds.poses(), ds.skeleton, [0.2]).mean_at(0.2) >= 0.6


def test_shipped_full_body_model_is_complete_and_fits_the_budget(lsp_weights):
    """weights/lsp: 14 joints, sigma 2 (the paper's LSP setting), the full-body face scaler in
    the manifest, val figures of every stage, ONNX files, under 60 MB."""
    info = read_manifest(lsp_weights)
    m = info.manifest.to_dict()
    assert info.skeleton.name == "lsp" and info.skeleton.k == 14
    assert len(m["stages"]) == 3 and m["sigma"] == 2.0
    assert m["scaler"]["scale_y"] > m["scaler"]["scale_x"] > 1 and m["scaler"]["offset_y"] > 0   # a body below the face
    assert set(m["val_metrics"]) == {"stage1", "stage2", "stage3"}
    p01 = [m["val_metrics"][f"stage{s}"]["pdj@0.1"]["mean"] for s in (1, 2, 3)]
    assert p01[0] < p01[1] < p01[2], p01
    assert all(p.is_file() for p in info.onnx_files) and len(info.onnx_files) == 3
    assert sum(f.stat().st_size for f in lsp_weights.iterdir() if f.is_file() and ".engine" not in f.name) < 60e6


def test_shipped_full_body_cascade_finds_legs_on_real_lsp_images(lsp_weights):
    """20 real LSP training images with the image as b0 (the paper's LSP protocol): at stage 3
    the hips, knees and shoulders are within PDJ@0.2 for well over a third of the persons (v1
    read 0.49 here, v2 0.76: these are training images; a broken or random model reads near 0),
    and stage 3 beats stage 1."""
    require_data("lsp", "joints.mat")
    from deeppose.engine.detection.persons import frame_box

    cascade, info = load_cascade(lsp_weights)
    ds = load_dataset("lsp", None, "train")
    ds.examples = ds.examples[::45][:20]
    poses = []
    for e in ds.examples:
        image = load_image(e.image_path)
        poses.append(cascade.run(image, frame_box(image.shape[1], image.shape[0])[None]).stage_poses[:, 0])
    poses = np.stack(poses, axis=1)   # (S, N, k, 2)
    first, last = (pdj(poses[s], ds.poses(), ds.skeleton, [0.2]) for s in (0, -1))
    per_joint = dict(zip(ds.skeleton.joints, last.at(0.2).round(2)))
    assert np.mean([per_joint[j] for j in ("l_hip", "r_hip", "l_knee", "r_knee", "l_shoulder", "r_shoulder")]) >= 0.4, per_joint
    assert last.mean_at(0.2) > first.mean_at(0.2)


def test_shipped_full_body_figure_follows_the_walker_upright_through_walking_mp4(lsp_weights):
    """The full-body model in the video pipeline on all 144 frames of walking.mp4 (a real clip,
    b0 from faces through the full-body scaler): the walker's figure has its head on his head
    (tools.eval.person_precision) in nearly every frame, and is upright in each of them, head top
    above neck above hips above knees above ankles, spanning at least 0.55 of b0's height. A
    model that regressed his head onto his chest in 13 frames (a stage 1 trained 800 epochs
    more, docs/lsp_gpu_runs.md) matched him in only 125 frames; v2 matches him in 141. (The
    span is 0.65 of b0's height at the median, 0.61 at the 5th percentile, and its minimum
    moves with the face boxes: 0.605 with MediaPipe's face detector, 0.579 with LiteRT's, whose
    boxes differ by a pixel and so shift the face search's windows from frame to frame.)"""
    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.pipeline import PosePipeline
    from deeppose.tools.eval.person_precision import DEFAULT_TRUTH, head_points, match, walker_box
    from support import walking_video_frames

    truth = json.loads(DEFAULT_TRUTH.read_text())
    on_walker, not_upright = 0, []
    with PosePipeline(PipelineConfig(lsp_weights)) as pipe:
        names = list(pipe.skeleton.joints)
        for i, frame in enumerate(walking_video_frames(144)):
            persons = pipe.process(frame, i / 30, i).persons
            records = [{"joints": {n: {"x": x, "y": y} for n, (x, y) in zip(names, p.pose.tolist())}} for p in persons]
            m = match(head_points(records), walker_box(truth, i)[None])
            if not m:
                continue
            on_walker += 1
            p = persons[next(iter(m))]
            y = {n: v for n, v in zip(names, p.pose[:, 1])}
            chain = [y["head_top"], y["neck"], (y["l_hip"] + y["r_hip"]) / 2, (y["l_knee"] + y["r_knee"]) / 2,
                     (y["l_ankle"] + y["r_ankle"]) / 2]
            if not (np.diff(chain) > 0).all() or chain[-1] - chain[0] < 0.55 * p.b0[3]:
                not_upright.append((i, np.round(chain).tolist()))
    assert on_walker >= 138 and not not_upright, (on_walker, not_upright)
