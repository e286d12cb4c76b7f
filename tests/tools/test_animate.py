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
