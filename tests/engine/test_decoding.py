"""Decoding video files (engine/frames.py) and what the `video` command makes of it (issue 23,
items 4-6): a damaged middle is skipped and counted, not taken for the end; variable frame
rates keep their times (keypoints, smoothing, the output video); non-square pixels are
resampled to the display geometry. Every clip is made here with PyAV from a few frames of
../shared/data/videos/walking.mp4, downscaled (tests/support/clips.py)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import main
from deeppose.engine.frames import FrameReader, open_source
from deeppose.engine.keypoints import read_keypoints, read_keypoints_header
from deeppose.engine.smoothing import OneEuroFilter
from support import WALKING, WEIGHTS_FLIC, require_data
from support.clips import damage_packets, frame_times, walking_frames, write_clip

CLIP_FRAMES = 40
SIZE = (320, 180)
DAMAGED = (15, 5)          # packets 15..19 of the corrupt clip are overwritten with zeros


@pytest.fixture(scope="module")
def model_dir(random_model_dir) -> Path:
    return WEIGHTS_FLIC if (WEIGHTS_FLIC / "manifest.json").is_file() else random_model_dir


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    require_data("videos", "walking.mp4")
    return walking_frames(WALKING, CLIP_FRAMES, SIZE)


@pytest.fixture(scope="module")
def corrupt(frames, tmp_path_factory) -> tuple[Path, list[float]]:
    """A 40-frame clip (320x180, 30 fps) whose packets 15..19 (in file order) are zeros: 35
    decodable frames; and the presentation times of the 5 damaged ones, seconds."""
    path = write_clip(tmp_path_factory.mktemp("corrupt") / "corrupt.mp4", frames)
    return path, damage_packets(path, *DAMAGED)


@pytest.fixture(scope="module")
def corrupt_clip(corrupt) -> Path:
    return corrupt[0]


def read_all(path: Path, **kw) -> tuple[list[tuple[int, np.ndarray, float]], FrameReader]:
    reader = FrameReader(open_source(path), **kw)
    try:
        return list(reader), reader
    finally:
        reader.close()


# -- 4. a damaged middle --------------------------------------------------------------------------
def test_reader_skips_damaged_frames_and_counts_them(corrupt):
    corrupt_clip, damaged_times = corrupt
    items, reader = read_all(corrupt_clip)
    count = DAMAGED[1]
    assert len(items) == CLIP_FRAMES - count
    assert reader.unreadable == count and reader.error is None
    assert reader.note == f"{count} unreadable frames skipped (damaged data)"
    assert [i for i, _, _ in items] == list(range(CLIP_FRAMES - count))
    # the frames after the damage keep their own times: the gap is visible
    times = [t for _, _, t in items]
    expected = [i / 30 for i in range(CLIP_FRAMES) if min(abs(i / 30 - t) for t in damaged_times) > 1e-6]
    np.testing.assert_allclose(times, expected, atol=1e-6)


def test_reader_gives_up_after_too_many_unreadable_frames_in_a_row(corrupt_clip):
    opened = open_source(corrupt_clip)
    opened.capture.max_unreadable_run = 3
    reader = FrameReader(opened)
    try:
        items = list(reader)
    finally:
        reader.close()
    assert len(items) <= DAMAGED[0]   # B-frames: a few decoded before the damage may be lost with it
    assert reader.unreadable == 3
    assert reader.error.startswith("gave up after 3 unreadable frames in a row (damaged data, near ")


def test_video_skips_damaged_frames_with_one_note(corrupt_clip, model_dir, tmp_path, capfd):
    """Issue 23, item 4: every good frame is written, one line counts the unreadable ones, and
    FFmpeg's own messages do not reach the terminal (capfd: also what C code writes to fd 2)."""
    out, kp = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    rc = main.main(["video", str(corrupt_clip), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir)])
    captured = capfd.readouterr()
    good = CLIP_FRAMES - DAMAGED[1]
    assert rc == 0, captured.err
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert err == [f"note: {corrupt_clip}: {DAMAGED[1]} unreadable frames skipped (damaged data); {good} frames written"]
    assert captured.out.strip().splitlines()[-1].startswith(f"done: {good} frames")
    assert len(frame_times(out)) == good
    assert len(read_keypoints(kp)) == good


def test_video_gives_up_on_a_long_damaged_stretch(corrupt_clip, model_dir, tmp_path, capfd, monkeypatch):
    """More unreadable frames in a row than MAX_UNREADABLE_RUN: the input is given up as failed
    (exit 1), with the frames before it kept."""
    import deeppose.engine.frames as frames

    monkeypatch.setattr(frames, "MAX_UNREADABLE_RUN", 3)
    out = tmp_path / "out.mp4"
    rc = main.main(["video", str(corrupt_clip), "-o", str(out), "--weights", str(model_dir), "--stages", "1"])
    err = capfd.readouterr().err
    assert rc == 1, err
    assert "gave up after 3 unreadable frames in a row" in err and "h264" not in err
    assert 0 < len(frame_times(out)) <= DAMAGED[0]


def test_jobs_summary_shows_the_unreadable_frames(corrupt_clip, frames, model_dir, tmp_path, capfd):
    clean = write_clip(tmp_path / "clean.mp4", frames[:6])
    rc = main.main(["video", str(corrupt_clip), str(clean), "--jobs", "1", "--out-dir", str(tmp_path),
                    "--weights", str(model_dir), "--stages", "1"])
    captured = capfd.readouterr()
    assert rc == 0, captured
    ok = [line for line in captured.out.splitlines() if line.startswith("ok ")]
    assert len(ok) == 2
    damaged = next(line for line in ok if "corrupt.mp4" in line)
    assert f"done: {CLIP_FRAMES - DAMAGED[1]} frames" in damaged and "5 unreadable frames skipped" in damaged
    assert "unreadable" not in next(line for line in ok if "clean.mp4" in line)
    assert "h264" not in captured.err and "NAL" not in captured.err


# -- 5. variable frame rate -----------------------------------------------------------------------
# The variable-frame-rate clip: frames 0-29 every 1/30 s, then every 2/30 s (issue 23, item 5).
VFR_PTS = [i if i < 30 else 30 + 2 * (i - 30) for i in range(CLIP_FRAMES)]


@pytest.fixture(scope="module")
def vfr_clip(frames, tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", frames, pts=VFR_PTS)


def test_vfr_times_in_keypoints_smoothing_and_output(vfr_clip, model_dir, tmp_path, capfd, monkeypatch):
    """Issue 23, item 5: the source's presentation times, not index / average fps, time the
    keypoints, the One-Euro filter and the output video (tolerance 1 ms)."""
    source_times = [p / 30 for p in VFR_PTS]
    np.testing.assert_allclose(frame_times(vfr_clip), source_times, atol=1e-6)   # the clip is what we meant
    filtered_at: list[float] = []
    call = OneEuroFilter.__call__

    def spy(self, x, t, scale=1.0):
        filtered_at.append(float(t))
        return call(self, x, t, scale)

    monkeypatch.setattr(OneEuroFilter, "__call__", spy)
    out, kp = tmp_path / "vfr.pose.mp4", tmp_path / "vfr.jsonl"
    rc = main.main(["video", str(vfr_clip), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir)])
    assert rc == 0, capfd.readouterr().err
    records = read_keypoints(kp)
    np.testing.assert_allclose([r["timestamp"] for r in records], source_times, atol=1e-3)
    np.testing.assert_allclose(frame_times(out), source_times, atol=1e-3)
    assert filtered_at, "nobody was smoothed: the test clip shows nobody the model finds"
    assert all(np.abs(np.asarray(source_times) - t).min() < 1e-6 for t in filtered_at)


def test_writer_keeps_the_time_base_it_is_given(tmp_path):
    from deeppose.engine.recording import AnnotatedVideoWriter

    times = [p / 30 for p in VFR_PTS[:34]]
    w = AnnotatedVideoWriter(tmp_path / "t.mp4", 30, (64, 48), variable_rate=True, time_base=Fraction(1, 30000))
    for i, t in enumerate(times):
        w.write(np.full((48, 64, 3), 5 * i, np.uint8), timestamp=t)
    w.close()
    np.testing.assert_allclose(frame_times(tmp_path / "t.mp4"), times, atol=1e-6)


# -- 6. non-square pixels -------------------------------------------------------------------------
def test_display_size():
    from deeppose.engine.frames import display_size

    assert display_size((960, 720), Fraction(4, 3)) == (1280, 720)
    assert display_size((720, 576), Fraction(16, 15)) == (768, 576)
    assert display_size((1280, 720), Fraction(3, 4)) == (1280, 960)   # tall pixels: taller, nothing lost
    assert display_size((101, 75), Fraction(1)) == (101, 75)
    assert display_size((101, 75), Fraction(3, 2)) == (152, 75)        # stretched side even


@pytest.fixture(scope="module")
def anamorphic_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """walking.mp4 stored as 480x360 with 4:3 pixels (displays 640x360, 16:9), and its frames
    at display size."""
    require_data("videos", "walking.mp4")
    shown = walking_frames(WALKING, 8, (640, 360))
    stored = walking_frames(WALKING, 8, (480, 360))
    path = write_clip(tmp_path_factory.mktemp("sar") / "anamorphic.mp4", stored, sample_aspect=Fraction(4, 3))
    return path, shown


def test_non_square_pixels_are_resampled_to_display_geometry(anamorphic_clip):
    from deeppose.engine.frames import VideoFile

    path, shown = anamorphic_clip
    opened = open_source(path)
    try:
        assert opened.size == (640, 360) and opened.first.shape == (360, 640, 3)
        video = opened.capture
        assert isinstance(video, VideoFile)
        assert (video.stored_size, video.sample_aspect) == ((480, 360), Fraction(4, 3))
        # the picture is the display-size one: H.264 and two resamplings apart, a few grey
        # levels on average (0..255)
        diff = np.abs(opened.first.astype(np.int16) - shown[0]).mean()
        assert diff < 6, diff
    finally:
        opened.release()


def test_video_output_and_keypoints_in_display_geometry(anamorphic_clip, model_dir, tmp_path, capfd):
    path, _ = anamorphic_clip
    out, kp = tmp_path / "a.pose.mp4", tmp_path / "a.jsonl"
    rc = main.main(["video", str(path), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir),
                    "--stages", "1", "--max-frames", "4"])
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    with av.open(str(out)) as c:   # square pixels: no sample aspect, or 1:1
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (640, 360)
        assert s.sample_aspect_ratio in (None, Fraction(1), Fraction(0, 1))
    header = read_keypoints_header(kp)
    assert (header["width"], header["height"]) == (640, 360)
    assert "square pixels" in header["size_note"]
    assert "640x360 (stored 480x360 with 4/3 pixels, resampled to square pixels)" in captured.out
