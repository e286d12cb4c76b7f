"""tools/eval/cuts.py: the walking.mp4 cuts and the agreement with MediaPipe's figure."""
import numpy as np

from deeppose.engine.skeletons import LSP
from deeppose.tools.eval.cuts import agreement, cut_clips
from deeppose.tools.eval.peer import BLAZEPOSE_JOINTS, peer_pose


def reference_pose() -> np.ndarray:
    """A (14, 2) upright figure in LSP's joints, neck and head top NaN (as MediaPipe's through
    peer_pose): torso 100 px wide and 200 px tall, diam (right shoulder to left hip) about 201 px."""
    pts = {"l_shoulder": (150, 100), "r_shoulder": (50, 100), "l_elbow": (170, 180), "r_elbow": (30, 180),
           "l_wrist": (180, 250), "r_wrist": (20, 250), "l_hip": (140, 300), "r_hip": (60, 300),
           "l_knee": (145, 400), "r_knee": (55, 400), "l_ankle": (150, 500), "r_ankle": (50, 500)}
    return np.array([pts.get(j, (np.nan, np.nan)) for j in LSP.joints], float)


def test_peer_pose_puts_the_12_blazepose_body_joints_in_a_skeleton():
    landmarks = np.arange(66, dtype=float).reshape(33, 2)
    pose = peer_pose(landmarks, LSP)
    assert np.isnan(pose[[LSP.joints.index("neck"), LSP.joints.index("head_top")]]).all()
    for name, i in BLAZEPOSE_JOINTS.items():
        np.testing.assert_array_equal(pose[LSP.joints.index(name)], landmarks[i])


def test_agreement_is_pdj_at_a_fifth_of_the_reference_diam_as_labelled_and_with_sides_swapped():
    ref = reference_pose()
    diam = np.linalg.norm(ref[LSP.joints.index("r_shoulder")] - ref[LSP.joints.index("l_hip")])
    assert agreement(ref, ref) == (12, 12, 12)   # the neck and head top are not scored
    assert agreement(ref + [0, 0.19 * diam], ref) == (12, 12, 12)
    assert agreement(ref + [0, 0.21 * diam], ref) == (0, 0, 12)
    mirrored = ref[list(LSP.mirror)]   # the right figure with its sides swapped
    labelled, either, _ = agreement(mirrored, ref)
    assert either == 12 and labelled < 12
    wrong = ref.copy()
    wrong[LSP.joints.index("l_knee")] = np.nan   # a missing joint never agrees
    assert agreement(wrong, ref) == (11, 11, 12)


def test_the_cuts_turn_and_crop_the_frames():
    frames = [np.full((720, 1280, 3), i, np.uint8) for i in range(2)]
    frames[0][:10, :20] = 255   # the top-left corner marks the turns
    cuts = cut_clips(frames)
    assert {k: v[0].shape for k, v in cuts.items()} == {"upright": (720, 1280, 3), "turned 90": (640, 360, 3),
                                                        "turned 180": (360, 640, 3), "head cut off": (413, 640, 3)}
    assert cuts["turned 90"][0][0, -1].max() == 255 and cuts["turned 180"][0][-1, -1].max() == 255
    assert cuts["head cut off"][0][0, 0].max() == 0   # the top 100 rows and left 320 columns are gone
    assert all(len(v) == 2 for v in cuts.values())


def test_a_model_without_legs_is_refused_in_one_line_before_any_work(flic_weights, capsys):
    from deeppose.tools.eval.cuts import main

    assert main(["--model", str(flic_weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cuts: error: model") and "l_knee" in err and "\n" not in err
