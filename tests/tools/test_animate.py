"""tools/eval/animate.py: a labelled image animated into a clip keeps its ground truth exact."""
from __future__ import annotations

import numpy as np
import pytest

from deeppose.tools.eval.animate import animate, animation_affines


@pytest.mark.parametrize("i", [0, 7, 14])
def test_each_frames_joints_are_where_the_image_moved_them(i):
    """A bright dot at each labelled joint of a dark image lands on that frame's joints."""
    pose = np.array([[20.0, 30.0], [100.0, 150.0], [60.0, 90.0], [np.nan, np.nan]])
    image = np.zeros((180, 120, 3), np.uint8)
    for x, y in pose[:3]:
        image[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
    frames, poses = animate(image, pose, 15, out_size=240, turn_deg=180)
    assert len(frames) == 15 and poses.shape == (15, 4, 2) and np.isnan(poses[:, 3]).all()
    frame = frames[i].max(axis=2).astype(float)
    for x, y in poses[i, :3]:
        patch = frame[int(round(y)) - 3:int(round(y)) + 4, int(round(x)) - 3:int(round(x)) + 4]
        assert patch.max() > 100, (i, x, y)      # the dot is there (bilinear: within a pixel or two)


def test_the_animation_turns_half_a_turn_and_zooms_in():
    maps = animation_affines(5, (100, 200), 400, turn_deg=180, zoom=(1.0, 1.25), pan=0.0)
    scale = np.hypot(maps[:, 0, 0], maps[:, 1, 0])
    np.testing.assert_allclose(scale, 2.0 * np.linspace(1.0, 1.25, 5))   # 400 / 200 px, then the zoom
    np.testing.assert_allclose(np.degrees(np.arctan2(maps[:, 1, 0], maps[:, 0, 0]))[[0, 2]], [0, 90], atol=1e-9)
    centre = maps[-1] @ np.array([49.5, 99.5, 1.0])
    np.testing.assert_allclose(centre, [200, 200], atol=1e-9)            # the image's centre stays put


def test_a_figure_scores_the_truth_joints_it_names_within_a_fifth_of_diam():
    """_score: a pose in the model's joint names against LSP's truth, PDJ@0.2 (diam: a shoulder
    to the opposite hip); joints the model lacks, or the truth leaves unlabelled, are not scored."""
    from deeppose.engine.geometry import diam
    from deeppose.engine.skeletons import get_skeleton
    from deeppose.tools.eval.animate import _score

    lsp = get_skeleton("lsp")
    rng = np.random.default_rng(0)
    truth = rng.uniform(100, 300, (lsp.k, 2))
    truth[lsp.joints.index("r_ankle")] = np.nan
    d = float(diam(truth, lsp))
    names = [j for j in lsp.joints if j not in ("neck", "head_top")] + ["nose"]   # 12 of LSP's joints
    pose = np.array([truth[lsp.joints.index(n)] if n in lsp.joints else (0.0, 0.0) for n in names])
    pose[names.index("l_wrist")] += (0.25 * d, 0.0)     # one joint beyond 0.2 diam
    assert _score(pose, truth, names, lsp) == (10, 11)  # r_ankle unlabelled; neck, head top not named
