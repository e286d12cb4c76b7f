"""Geometry: N and N^-1 (Eq. 1), diam, joint boxes (Eq. 7), crops N(x; b) incl. frame borders."""
import numpy as np
import pytest
import torch

from deeppose.engine.geometry import (
    INPUT_SIZE,
    boxes_from_pose,
    crop_boxes,
    denormalize,
    diam,
    joint_boxes,
    normalize,
    to_network_input,
)
from deeppose.engine.skeletons import FLIC, LSP


def test_normalize_then_denormalize_is_identity_numpy_and_torch(rng):
    poses = rng.uniform(-50, 600, (7, FLIC.k, 2))
    boxes = np.column_stack([rng.uniform(0, 500, (7, 2)), rng.uniform(10, 300, (7, 2))])
    u = normalize(poses, boxes[:, None])
    np.testing.assert_allclose(denormalize(u, boxes[:, None]), poses, atol=1e-9)
    ut = normalize(torch.from_numpy(poses), torch.from_numpy(boxes)[:, None])
    np.testing.assert_allclose(ut.numpy(), u, atol=1e-12)
    np.testing.assert_allclose(denormalize(ut, torch.from_numpy(boxes)[:, None]).numpy(), poses, atol=1e-9)


def test_normalize_known_values():
    box = np.array([100.0, 50.0, 40.0, 20.0])
    # box corners map to +-0.5, the centre to 0
    pts = np.array([[80.0, 40.0], [120.0, 60.0], [100.0, 50.0], [110.0, 45.0]])
    np.testing.assert_allclose(normalize(pts, box), [[-0.5, -0.5], [0.5, 0.5], [0, 0], [0.25, -0.25]])


def test_diam_shoulder_to_opposite_hip_with_fallback():
    pose = np.full((FLIC.k, 2), np.nan)
    ls, rs, lh, rh = (FLIC.index(n) for n in ("l_shoulder", "r_shoulder", "l_hip", "r_hip"))
    pose[ls], pose[rh] = (0, 0), (30, 40)
    assert diam(pose, FLIC) == pytest.approx(50.0)
    pose[rh] = np.nan  # first pair unlabelled -> the other shoulder/hip pair
    pose[rs], pose[lh] = (10, 0), (10, 20)
    assert diam(pose, FLIC) == pytest.approx(20.0)
    assert np.isnan(diam(np.full((LSP.k, 2), np.nan), LSP))


def test_joint_boxes_eq7():
    pose = np.zeros((2, FLIC.k, 2))
    pose[:, :, 0] = np.arange(FLIC.k)
    pose[0, FLIC.index("l_shoulder")] = (0, 0)
    pose[0, FLIC.index("r_hip")] = (60, 80)  # diam 100
    pose[1] = pose[0] * 2  # diam 200
    b = joint_boxes(pose, 1.5, FLIC)
    assert b.shape == (2, FLIC.k, 4)
    np.testing.assert_allclose(b[..., :2], pose)
    np.testing.assert_allclose(b[0, :, 2:], 150.0)
    np.testing.assert_allclose(b[1, :, 2:], 300.0)
    # degenerate estimate: floor applies
    flat = np.zeros((1, FLIC.k, 2))
    assert joint_boxes(flat, 1.0, FLIC, min_size=12.0)[0, 0, 2] == 12.0


def _checker(h=200, w=300):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w)[None, :] % 256   # B channel encodes x
    img[..., 1] = np.arange(h)[:, None] % 256   # G channel encodes y
    img[..., 2] = 255
    return img


def test_crop_identity_box_reproduces_image_region():
    # a 220x220 box whose pixels align with the image's: crop == image region. Exact on purpose:
    # every sample falls on a pixel centre (weights exactly 1 and 0 in any implementation, no
    # rounding), and the image encodes x and y in steps of one grey level, so a tolerance of 1
    # would let a crop one pixel off pass.
    box = np.array([[50 + 109.5, 20 + 109.5, 220.0, 220.0]])
    img_big = _checker(300, 400)
    crop = crop_boxes(img_big, box)[0]
    np.testing.assert_array_equal(crop, img_big[20:240, 50:270])


def test_crop_lands_marker_where_normalized_coordinates_say():
    img = np.zeros((400, 600, 3), np.uint8)
    y, x = 130, 410
    img[y - 2:y + 3, x - 2:x + 3] = 255
    box = np.array([400.0, 150.0, 160.0, 120.0])  # non-square: anisotropic scaling; half-pixel edges
    u = normalize(np.array([x, y], float), box)
    expect = (u + 0.5) * INPUT_SIZE - 0.5
    # the affine path (any angle), and the resize path, whose box edges round to whole pixels:
    # up to half a frame pixel, INPUT_SIZE / side / 2 crop pixels; also with edges at fractions
    for shift in (0.0, 0.3, 0.7):
        b = box + (shift, shift, 0.0, 0.0)
        u = normalize(np.array([x, y], float), b)
        expect = (u + 0.5) * INPUT_SIZE - 0.5
        for angles, slack in ((np.array([1e-9]), (0.0, 0.0)), (None, 0.5 * INPUT_SIZE / b[2:4])):
            crop = crop_boxes(img, b[None], angles=angles)[0]
            ys, xs = np.nonzero(crop[..., 0] > 127)
            assert abs(xs.mean() - expect[0]) < 1.0 + slack[0] and abs(ys.mean() - expect[1]) < 1.0 + slack[1]


def assert_same_resampling(a: np.ndarray, b: np.ndarray) -> None:
    """``a`` and ``b`` are the same bilinear resampling of one image up to OpenCV's rounding: at
    most 1 grey level apart, in under 0.1% of the values. Not bit-equal: warpAffine rounds each
    sample position to 1/32 pixel, and a map that differs in the last bits (a box turned by
    1e-9 rad against an unturned one) moves the few positions that sit on a rounding boundary:
    3 of 435,600 values differed by 1 (OpenCV 5.1 on an AVX-512 Xeon, the same with its dispatch
    narrowed to AVX2, SSE4.2 or SSE3: the map's rounding, not the SIMD path; none on the AVX2
    EPYC of issue 23). Mix-ups are far larger: the resize path against the affine one differs
    in 27% of the values, a map off by one 1/32-pixel step in 2.4%."""
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1 and np.mean(d > 0) < 1e-3, (d.max(), np.mean(d > 0))


def test_axis_aligned_crop_inside_the_frame_matches_the_affine_map():
    """Boxes inside the frame take the resize path: on a smooth image it agrees with the general
    warpAffine crop (the exact affine map N(x; b)) to within rounding of the box to whole pixels;
    a box turned by any angle, or one that crosses the border, takes the affine path."""
    import cv2

    from deeppose.engine.geometry import box_to_crop_affine

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), (0, 0), 4)
    boxes = np.c_[rng.uniform(150, 490, 40), rng.uniform(150, 210, 40), rng.uniform(20, 290, 40),
                  rng.uniform(20, 290, 40)]
    for size in (96, INPUT_SIZE):
        ref = np.stack([cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                        for m in box_to_crop_affine(boxes, size)])
        diff = np.abs(crop_boxes(img, boxes, size).astype(int) - ref)
        # Each edge rounded to a whole pixel (at most half a pixel) on this image: mean 0.27, max
        # 3 grey levels at both sizes (every OpenCV dispatch level above). The bounds catch a box
        # off by half a pixel more (mean 0.45) or by one pixel (mean 0.78, max 6).
        assert diff.mean() < 0.4 and diff.max() <= 5, (diff.mean(), diff.max())
        turned = crop_boxes(img, boxes[:3], size, angles=np.full(3, 1e-9))
        assert_same_resampling(turned, ref[:3])
        mixed = crop_boxes(img, boxes[:2], size, angles=np.array([0.0, 1e-9]))   # per box
        assert_same_resampling(mixed[0], crop_boxes(img, boxes[:1], size)[0])
        assert_same_resampling(mixed[1], ref[1])


def test_crop_past_frame_border_pads_black():
    img = np.full((100, 100, 3), 200, np.uint8)
    boxes = np.array([[0.0, 0.0, 100.0, 100.0],      # centred on the top-left corner
                      [500.0, 500.0, 50.0, 50.0]])  # entirely outside
    crops = crop_boxes(img, boxes)
    assert crops.shape == (2, INPUT_SIZE, INPUT_SIZE, 3)
    top_left = crops[0]
    assert (top_left[:100, :100] == 0).all()          # outside the frame: zero padding
    assert (top_left[120:, 120:] == 200).all()         # inside: image content
    assert (crops[1] == 0).all()


def test_rotated_crop_moves_marker_by_rotation():
    img = np.zeros((300, 300, 3), np.uint8)
    img[148:153, 198:203] = 255  # marker at (200, 150): right of the box centre (150, 150)
    box = np.array([[150.0, 150.0, 200.0, 200.0]])
    crop = crop_boxes(img, box, angles=np.array([np.pi / 2]))[0]
    ys, xs = np.nonzero(crop[..., 0] > 127)
    # crop content is the image rotated: the marker at +x in the image appears at -y in the crop
    u = np.array([xs.mean(), ys.mean()]) / INPUT_SIZE * 200 + 0.5 * 200 / INPUT_SIZE - 100
    np.testing.assert_allclose(u, [0, -50], atol=1.5)


def test_to_network_input_layout_and_scale():
    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[1, :, :, 2] = 255
    x = to_network_input(crops)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert np.allclose(x[0], -127.5 / 64) and np.allclose(x[1, 2], 127.5 / 64)


def test_mirror_pose_swaps_sides_and_flips_x():
    pose = np.zeros((FLIC.k, 2))
    pose[FLIC.index("l_wrist")] = (10, 5)
    m = FLIC.mirror_pose(pose, width=100)
    np.testing.assert_allclose(m[FLIC.index("r_wrist")], (89, 5))
    np.testing.assert_allclose(FLIC.mirror_pose(m, 100), pose)
    for sk in (FLIC, LSP):
        assert sorted(sk.mirror) == list(range(sk.k))
        assert all(sk.mirror[sk.mirror[i]] == i for i in range(sk.k))


def test_boxes_from_pose():
    pose = np.array([[[0, 0], [10, 20], [np.nan, np.nan]]], float)
    np.testing.assert_allclose(boxes_from_pose(pose), [[5, 10, 10, 20]])
