"""`python main.py video`: annotated video and keypoints from a video file (engine/video_cli.py,
engine/recording.py), on cuts of the real ../shared/data/videos/walking.mp4."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from deeppose.engine.keypoints import read_keypoints, read_keypoints_header
from deeppose.engine.recording import MAX_EXTRA_VIDEO_FRAMES, AnnotatedVideoWriter
from deeppose.engine.skeletons import FLIC
from support import REPO, WALKING, WEIGHTS_FLIC, cut_video, require_data
from support import sigint_probe as probe

FULL_CUT = 36   # frames in the main test cut (the whole video has 144)


def video_facts(path: Path) -> tuple[int, int, float, tuple[int, int], list[np.ndarray]]:
    """(frames decoded, frame count in the header, fps, (w, h), a few decoded frames)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    n, kept = 0, []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n < 12:
            kept.append(frame)
        n += 1
    cap.release()
    return n, header, fps, size, kept


def input_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def is_walker(person: dict) -> bool:
    """The man walking toward the camera: his face is near x = 750..800, y = 50..100 in the
    first 36 frames (b0 held from that face counts too)."""
    b0 = person["b0"]
    return 650 < b0[0] < 900 and b0[1] < 300


@pytest.fixture(scope="module")
def model_dir(random_model_dir) -> Path:
    return WEIGHTS_FLIC if (WEIGHTS_FLIC / "manifest.json").is_file() else random_model_dir


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    require_data("videos", "walking.mp4")
    folder = tmp_path_factory.mktemp("cuts")
    return {"full": cut_video(WALKING, folder / "walking36.mp4", FULL_CUT),
            "short": cut_video(WALKING, folder / "walking8.mp4", 8)}


@pytest.fixture(scope="module")
def full_run(cuts, model_dir, tmp_path_factory):
    """One run over the 36-frame cut with all stages, smoothing and boxes: (rc, out, err, paths)."""
    folder = tmp_path_factory.mktemp("full_run")
    out, kp = folder / "walking.annotated.mp4", folder / "walking.jsonl"
    proc = subprocess.run([sys.executable, "main.py", "video", str(cuts["full"]), "-o", str(out), "--keypoints",
                           str(kp), "--weights", str(model_dir), "--draw-boxes"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr, out, kp


def test_output_has_input_frames_size_and_fps(full_run, cuts):
    rc, stdout, stderr, out, kp = full_run
    assert rc == 0, stderr
    n, header, fps, size, frames = video_facts(out)
    assert (n, header) == (FULL_CUT, FULL_CUT)
    assert size == (1280, 720)
    assert fps == pytest.approx(30.0)
    # The backend is printed, and a summary line closes the run.
    assert "backend: " in stdout
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(f"done: {FULL_CUT} frames") and "people per frame" in last and "ms per frame" in last
    assert "backend " in last


def test_keypoints_jsonl_one_record_per_frame(full_run, model_dir):
    rc, _, stderr, out, kp = full_run
    assert rc == 0, stderr
    lines = kp.read_text().splitlines()
    assert len(lines) == 1 + FULL_CUT
    header = json.loads(lines[0])
    assert header["deeppose_keypoints"] == 1 and header["video"] == out.name and header["joints"] == list(FLIC.joints)
    assert (header["fps"], header["width"], header["height"]) == (30.0, 1280, 720)
    recs = [json.loads(line) for line in lines[1:]]
    assert recs == read_keypoints(kp)
    assert [r["frame"] for r in recs] == list(range(FULL_CUT))
    assert [r["timestamp"] for r in recs] == pytest.approx([i / 30 for i in range(FULL_CUT)], abs=1e-3)
    stages = json.loads((Path(model_dir) / "manifest.json").read_text())["stages"]
    for r in recs:
        for p in r["persons"]:
            assert set(p) >= {"id", "b0", "b0_source", "face", "stage", "smoothed", "joints"}
            assert list(p["joints"]) == list(FLIC.joints)
            assert all(isinstance(v["x"], float) and isinstance(v["y"], float) and isinstance(v["in_frame"], bool)
                       for v in p["joints"].values())
            assert p["stage"] == len(stages) and p["smoothed"] is True
            assert p["b0_source"] in ("face", "pose", "held")
            assert (p["face"] is None) == (p["b0_source"] == "held")
    # The walker is a person in (nearly) every frame, with one id.
    walker = [[p for p in r["persons"] if is_walker(p)] for r in recs]
    assert sum(bool(w) for w in walker) >= 0.9 * FULL_CUT
    assert len({w[0]["id"] for w in walker if w}) == 1


def test_stick_figures_drawn_at_the_recorded_joints(full_run, cuts):
    rc, _, stderr, out, kp = full_run
    assert rc == 0, stderr
    recs = read_keypoints(kp)
    drawn = video_facts(out)[4]
    raw = input_frames(cuts["full"], len(drawn))
    checked = hits = 0
    for i in range(len(drawn)):
        diff = np.abs(drawn[i].astype(int) - raw[i].astype(int)).max(axis=2)
        for p in recs[i]["persons"]:
            for v in p["joints"].values():
                x, y = int(round(v["x"])), int(round(v["y"]))
                if 3 <= x < 1277 and 3 <= y < 717:
                    checked += 1
                    hits += diff[y - 1:y + 2, x - 1:x + 2].max() > 60
        # Away from every person box the frame is the input (up to compression).
        far = np.ones(diff.shape, bool)
        for p in recs[i]["persons"]:
            cx, cy, w, h = p["b0"]
            far[max(0, int(cy - h / 2 - 30)):int(cy + h / 2 + 30), max(0, int(cx - w / 2 - 30)):int(cx + w / 2 + 30)] = False
        assert np.percentile(diff[far], 99) < 40
    assert checked > 0 and hits >= 0.95 * checked


def test_trained_joints_lie_on_the_walker(full_run, flic_weights):
    """With the trained model: the walker's joints are inside the box his face implies, spread
    like an upright upper body, in most frames."""
    rc, _, stderr, out, kp = full_run
    assert rc == 0, stderr
    good = found = 0
    for r in read_keypoints(kp):
        walker = [p for p in r["persons"] if is_walker(p)]
        if not walker:
            continue
        found += 1
        p = walker[0]
        pose = np.array([[v["x"], v["y"]] for v in p["joints"].values()])
        b0 = np.array(p["b0"])
        inside = (np.abs(pose - b0[:2]) <= 0.55 * b0[2:]).all(axis=1).mean()
        j = FLIC.index
        sho_w = abs(pose[j("l_shoulder"), 0] - pose[j("r_shoulder"), 0])
        upright = pose[[j("l_hip"), j("r_hip")], 1].mean() > pose[[j("l_shoulder"), j("r_shoulder")], 1].mean() \
            > pose[j("nose"), 1]
        good += inside >= 0.9 and sho_w > 0.15 * b0[2] and upright
    assert found >= 0.9 * FULL_CUT
    assert good >= 0.8 * found, f"joints on the walker in {good} of {found} frames"


def test_csv_default_output_and_options(cuts, model_dir, tmp_path, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(cuts["short"].read_bytes())
    kp = tmp_path / "clip.csv"
    rc = main.main(["video", str(src), "--keypoints", str(kp), "--weights", str(model_dir), "--stages", "1",
                    "--no-smooth", "--backend", "torch"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    default_out = tmp_path / "clip.pose.mp4"
    assert default_out.is_file()
    assert video_facts(default_out)[:2] == (8, 8)
    header = kp.read_text().splitlines()[0].split(",")
    assert header[:7] == ["frame", "timestamp", "person", "b0_source", "stage", "smoothed", "score"]
    assert header[header.index("nose_x"):header.index("nose_x") + 4] == ["nose_x", "nose_y", "nose_in_frame", "nose_confidence"]
    assert header[-2:] == ["angle_r_shoulder", "angle_r_shoulder_confidence"]   # FLIC: elbows and shoulders
    recs = read_keypoints(kp)
    assert [r["frame"] for r in recs] == list(range(8))
    rows = kp.read_text().strip().splitlines()[1:]
    assert len(rows) == sum(max(1, len(r["persons"])) for r in recs)  # one row per person per frame
    persons = [p for r in recs for p in r["persons"]]
    assert persons and all(p["stage"] == 1 and p["smoothed"] is False for p in persons)
    assert "backend: torch" in out.out


def test_frames_with_nobody_are_recorded(model_dir, tmp_path, capsys):
    src = tmp_path / "empty.mp4"
    w = AnnotatedVideoWriter(src, 25, (320, 240), finalize=False)
    for i in range(5):
        w.write(np.full((240, 320, 3), 40 * i, np.uint8))
    w.close()
    for suffix in (".jsonl", ".csv"):
        kp = tmp_path / f"empty{suffix}"
        rc = main.main(["video", str(src), "-o", str(tmp_path / "o.mp4"), "--keypoints", str(kp),
                        "--weights", str(model_dir), "--stages", "1"])
        out = capsys.readouterr().out
        assert rc == 0
        recs = read_keypoints(kp)
        assert [(r["frame"], r["persons"]) for r in recs] == [(i, []) for i in range(5)]
        assert "5 frames with nobody" in out
    assert len((tmp_path / "empty.csv").read_text().splitlines()) == 1 + 5
    assert video_facts(tmp_path / "o.mp4")[:3] == (5, 5, pytest.approx(25.0))


def test_tracking_options_reach_the_pipeline():
    """--detect-every, --recheck-every, --max-persons and --confirm become the pipeline config's
    options (unset: the config's defaults)."""
    import argparse

    from deeppose.engine.config import DEFAULT_RECHECK_EVERY, PipelineConfig
    from deeppose.engine.video_cli import add_tracking_options

    parser = argparse.ArgumentParser()
    add_tracking_options(parser)
    cfg = PipelineConfig.from_args(parser.parse_args(["--detect-every", "3", "--recheck-every", "7",
                                                      "--max-persons", "1", "--confirm", "2"]))
    assert (cfg.detect_every, cfg.recheck_every, cfg.max_persons, cfg.confirm_hits) == (3, 7, 1, 2)
    assert PipelineConfig.from_args(parser.parse_args([])).recheck_every == DEFAULT_RECHECK_EVERY


@pytest.mark.parametrize("case", ["missing", "text", "image", "folder", "no_out_dir", "out_suffix",
                                  "kp_suffix", "kp_dir", "stages0", "stages_high", "weights", "detect_every0",
                                  "recheck_every0", "confirm0"])
def test_bad_input_fails_early_with_one_line(case, cuts, model_dir, tmp_path, capsys):
    src, out, kp = cuts["short"], tmp_path / "o.mp4", tmp_path / "k.jsonl"
    extra: list[str] = []
    weights = str(model_dir)
    if case == "missing":
        src = tmp_path / "nope.mp4"
    elif case == "text":
        src = tmp_path / "notes.mp4"
        src.write_text("not a video\n" * 100)
    elif case == "image":
        src = tmp_path / "still.png"
        cv2.imwrite(str(src), np.zeros((64, 64, 3), np.uint8))
    elif case == "folder":
        src = tmp_path
    elif case == "no_out_dir":
        out = tmp_path / "missing" / "o.mp4"
    elif case == "out_suffix":
        out = tmp_path / "o.txt"
    elif case == "kp_suffix":
        kp = tmp_path / "k.txt"
    elif case == "kp_dir":
        kp = tmp_path / "missing" / "k.jsonl"
    elif case == "stages0":
        extra = ["--stages", "0"]
    elif case == "stages_high":
        extra = ["--stages", "9"]
    elif case == "weights":
        weights = str(tmp_path / "no_model")
    elif case == "detect_every0":
        extra = ["--detect-every", "0"]
    elif case == "recheck_every0":
        extra = ["--recheck-every", "0"]
    elif case == "confirm0":
        extra = ["--confirm", "0"]
    rc = main.main(["video", str(src), "-o", str(out), "--keypoints", str(kp), "--weights", weights, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists() and not kp.exists()


def run_interrupted_at(moment: str, args: list[str], needed: bool = True, **kw) -> tuple[int, str, str]:
    """``python main.py ARGS`` with SIGINT at ``moment`` (tests/support/sigint_probe.py; ``kw`` as there); a
    moment inside a library (``needed`` False) that another version of it no longer has skips the test."""
    result = probe.run_interrupted_at(moment, REPO / "main.py", args, **kw)
    if result is None:
        if needed:
            pytest.fail(f"the process never reached {moment}")
        pytest.skip(f"this version of the library has no {moment}")
    return result


def test_ctrl_c_leaves_playable_output_with_every_frame_done(cuts, model_dir, tmp_path):
    """Ctrl-C during the 5th frame (sent there, tests/support/sigint_probe.py; it was sent once 4 records
    were on disk, with no guarantee the run had not ended by then): the run stops after that
    frame, and the video and the keypoints hold exactly those 5 frames."""
    out, kp = tmp_path / "o.mp4", tmp_path / "k.jsonl"
    rc, stdout, stderr = run_interrupted_at("call:deeppose.engine.pipeline:PosePipeline.process@5", [
        "video", str(cuts["full"]), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir), "--stages", "1"])
    assert rc == 130, stderr
    records = len(read_keypoints(kp))
    assert records == 5
    n, header, fps, size, _ = video_facts(out)
    assert n == header == records
    assert size == (1280, 720) and fps == pytest.approx(30.0)
    assert f"interrupted after {records} frames" in stderr
    assert stdout.strip().splitlines()[-1].startswith(f"interrupted: {records} frames")


def test_killed_run_leaves_playable_output(cuts, model_dir, tmp_path):
    """Even a process killed outright (no cleanup at all) leaves a playable video holding the
    frames encoded (fragmented MP4, one fragment per frame) and the keypoints of every frame.
    Killed while it is held at its 14th frame, once 6 records are on disk (the writer thread
    goes on meanwhile; a frame is written 4 frames after it is processed, the lookahead for
    confirmations): mid-run for certain, however fast the machine."""
    out, kp = tmp_path / "o.mp4", tmp_path / "k.jsonl"

    def six_records():
        t = time.monotonic()
        while not (kp.exists() and len(kp.read_text().splitlines()) >= 1 + 6):   # the header record and 6 frames
            assert time.monotonic() - t < 120, "no keypoints written in time"
            time.sleep(0.05)

    rc, _, _ = run_interrupted_at("call:deeppose.engine.pipeline:PosePipeline.process@14", [
        "video", str(cuts["full"]), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir), "--stages", "1"],
        sig=signal.SIGKILL, before_signal=six_records)
    assert rc == -signal.SIGKILL
    records = read_keypoints(kp)
    assert [r["frame"] for r in records] == list(range(len(records))) and 6 <= len(records) <= 9
    n, _, fps, size, _ = video_facts(out)
    # A record is written once its frame is in the video: never more records than frames, and
    # at most the documented number of frames more (issue 12).
    extra = read_keypoints_header(kp)["frames_note"]
    assert f"up to {MAX_EXTRA_VIDEO_FRAMES} frames more" in extra
    assert len(records) <= n <= len(records) + MAX_EXTRA_VIDEO_FRAMES and n >= 2
    assert size == (1280, 720) and fps == pytest.approx(30.0)


KILLED_WRITER = """
import os, sys
import numpy as np
from deeppose.engine.pipeline import FrameResult
from deeppose.engine.recording import PoseRecorder
from deeppose.engine.skeletons import FLIC
rec = PoseRecorder(sys.argv[1], sys.argv[2], 30, (64, 48), FLIC, threaded=False)
for i in range(int(sys.argv[3])):
    rec.write(np.full((48, 64, 3), 30 * i, np.uint8), FrameResult(i, i / 30, [], 0.0, [], 0.0, "torch"))
os._exit(0)   # as if killed: nothing is closed or flushed by Python
"""


@pytest.mark.parametrize("frames", [1, 2, 5])
def test_killed_recorder_keypoints_never_ahead_of_the_video(tmp_path, frames):
    """Killed right after a frame was written, the keypoints file holds exactly the frames that
    are in the video (before issue 12 it held one record more than the video had frames)."""
    out, kp = tmp_path / "o.mp4", tmp_path / "k.jsonl"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out), str(kp), str(frames)], cwd=REPO, check=True, timeout=120)
    n = video_facts(out)[0] if frames > 1 else 0   # one frame: the muxer still holds it
    assert n == frames - 1
    assert len(read_keypoints(kp)) == n
    assert read_keypoints_header(kp)["video"] == "o.mp4"


def test_video_failure_stops_the_keypoints_too(tmp_path, monkeypatch):
    """A video that cannot be written (e.g. a full disk) gets no keypoints records for the
    frames it lost."""
    from deeppose.engine.pipeline import FrameResult
    from deeppose.engine.recording import PoseRecorder, RecordingError
    rec = PoseRecorder(tmp_path / "o.mp4", tmp_path / "k.jsonl", 30, (64, 48), FLIC, threaded=False, finalize=False)

    class FullDisk:   # the container, but muxing fails from the 5th frame on
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def mux(self, packet):
            if rec.video.frames_encoded >= 4:
                raise OSError(28, "No space left on device")
            return self.inner.mux(packet)

    rec.video._container = FullDisk(rec.video._container)
    with pytest.raises(RecordingError, match="No space left"):
        for i in range(8):
            rec.write(np.full((48, 64, 3), 30 * i, np.uint8), FrameResult(i, i / 30, [], 0.0, [], 0.0, "torch"))
    with pytest.raises(RecordingError):
        rec.close()
    n = video_facts(tmp_path / "o.mp4")[0]
    assert n == 4 and len(read_keypoints(tmp_path / "k.jsonl")) == n


def test_crash_midway_keeps_frames_done(cuts, model_dir, tmp_path, capsys, monkeypatch):
    from deeppose.engine.pipeline import PosePipeline
    real = PosePipeline.process
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("simulated failure")
        return real(self, *a, **kw)

    monkeypatch.setattr(PosePipeline, "process", flaky)
    out, kp = tmp_path / "o.mp4", tmp_path / "k.csv"
    rc = main.main(["video", str(cuts["short"]), "-o", str(out), "--keypoints", str(kp), "--weights",
                    str(model_dir), "--stages", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "simulated failure" in err and "failed after 5 frames" in err
    assert video_facts(out)[:2] == (5, 5)
    assert [r["frame"] for r in read_keypoints(kp)] == list(range(5))


def test_recorder_rejects_wrong_frame_size(tmp_path):
    w = AnnotatedVideoWriter(tmp_path / "v.mp4", 30, (64, 48))
    with pytest.raises(ValueError):
        w.write(np.zeros((48, 60, 3), np.uint8))
    w.write(np.zeros((48, 64, 3), np.uint8))
    w.close()
    w.close()  # idempotent
    assert video_facts(tmp_path / "v.mp4")[:2] == (1, 1)


def test_odd_frame_size_and_fractional_fps(tmp_path):
    w = AnnotatedVideoWriter(tmp_path / "odd.mp4", 29.97, (65, 49))
    for i in range(3):
        w.write(np.full((49, 65, 3), 80 * i, np.uint8))
    w.close()
    n, header, fps, size, _ = video_facts(tmp_path / "odd.mp4")
    assert (n, size) == (3, (65, 49)) and fps == pytest.approx(29.97, abs=0.01)


def test_recorder_timestamps_for_live_sources(tmp_path):
    """With timestamps on, unevenly spaced live frames keep their times in the video."""
    from deeppose.engine.pipeline import FrameResult
    from deeppose.engine.recording import PoseRecorder
    times = [10.0, 10.1, 10.15, 10.4, 10.5, 11.0]
    rec = PoseRecorder(tmp_path / "live.mp4", tmp_path / "live.jsonl", 30, (64, 48), FLIC, timestamps=True)
    for i, t in enumerate(times):
        rec.write(np.full((48, 64, 3), 40 * i, np.uint8), FrameResult(i, t, [], 0.0, [], 0.0, "torch"))
    rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "live.mp4"))
    got = []
    while cap.read()[0]:
        got.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    assert got == pytest.approx([t - times[0] for t in times], abs=0.002)
    assert [r["timestamp"] for r in read_keypoints(tmp_path / "live.jsonl")] == times


# --------------------------------------------------------------------------- issue 12: never lose a file

def test_output_that_is_a_hard_link_of_the_input_is_refused(cuts, model_dir, tmp_path, capsys):
    """A hard link has another path text but is the same file: writing it would destroy the input."""
    src = tmp_path / "in.mp4"
    src.write_bytes(cuts["short"].read_bytes())
    before = src.read_bytes()
    for out, kp in ((tmp_path / "link.mp4", None), (tmp_path / "o.mp4", tmp_path / "link.jsonl")):
        os.link(src, kp or out)
        argv = ["video", str(src), "-o", str(out), "--weights", str(model_dir)] + (["--keypoints", str(kp)] if kp else [])
        rc = main.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "would overwrite the input" in err[0], err
        assert src.read_bytes() == before
        (kp or out).unlink()
    # a keypoints file that is a hard link of the output video
    os.link(src, tmp_path / "copy.mp4")
    os.link(tmp_path / "copy.mp4", tmp_path / "copy.jsonl")
    rc = main.main(["video", str(cuts["short"]), "-o", str(tmp_path / "copy.mp4"), "--keypoints",
                    str(tmp_path / "copy.jsonl"), "--weights", str(model_dir)])
    assert rc == 2 and "are the same file" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_second_run_writing_the_same_output_is_refused(cuts, model_dir, tmp_path, capsys):
    """While one run writes OUTPUT, a second run (another input) refuses in one line and
    damages nothing: the first run's video and keypoints come out whole. The first run is held
    at its 3rd frame while the others try (tests/support/sigint_probe.py, no signal), so it is running
    for certain, however fast the machine."""
    out, kp = tmp_path / "o.mp4", tmp_path / "k.jsonl"

    def others_try():
        for other_kp in (tmp_path / "other.jsonl", kp):
            rc = main.main(["video", str(cuts["short"]), "-o", str(out), "--keypoints", str(other_kp),
                            "--weights", str(model_dir), "--stages", "1"])
            err = capsys.readouterr().err.strip().splitlines()
            assert rc == 2 and len(err) == 1 and "is being written by another run" in err[0], err
        rc = main.main(["video", str(cuts["short"]), "-o", str(tmp_path / "o2.mp4"), "--keypoints", str(kp),
                        "--weights", str(model_dir)])
        assert rc == 2 and "is being written by another run" in capsys.readouterr().err

    rc, _, stderr = run_interrupted_at("call:deeppose.engine.pipeline:PosePipeline.process@3", [
        "video", str(cuts["full"]), "-o", str(out), "--keypoints", str(kp), "--weights", str(model_dir), "--stages", "1"],
        sig=None, before_signal=others_try, timeout=600)
    assert rc == 0, stderr
    records = read_keypoints(kp)
    assert [r["frame"] for r in records] == list(range(FULL_CUT))
    assert video_facts(out)[:2] == (FULL_CUT, FULL_CUT)
    assert not (tmp_path / "other.jsonl").exists() and not (tmp_path / "o2.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.jsonl", "o.mp4"]   # no lock file left


def test_output_under_proc_fails_before_any_work(cuts, model_dir, monkeypatch, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    from deeppose import engine

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the output was found unwritable")

    monkeypatch.setattr(engine.pipeline.PosePipeline, "__init__", refuse)
    rc = main.main(["video", str(cuts["short"]), "-o", "/proc/deeppose-test.mp4", "--weights", str(model_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: cannot write output video /proc/deeppose-test.mp4"), err


def test_ctrl_c_during_start_up_is_one_line(cuts, model_dir, tmp_path, monkeypatch, capsys):
    from deeppose import engine

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.pipeline.PosePipeline, "__init__", interrupted)
    out = tmp_path / "o.mp4"
    rc = main.main(["video", str(cuts["short"]), "-o", str(out), "--weights", str(model_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130 and len(err) == 1 and "interrupted" in err[0], err
    assert list(tmp_path.iterdir()) == []   # no output, no lock file


START_UP_MOMENTS = [
    "import:deeppose.cli",                  # main.py imports the command line (before main() runs)
    "import:deeppose.engine.video_cli",     # main() parses the options: every command module is imported
    "import:datetime",                      # inside numpy's C initialization (it imports datetime)
    "import:cv2.version",                   # inside OpenCV's loader (its config runs under a bare except)
    "import:ai_edge_litert.interpreter",    # LiteRT, the face detector's runtime
    "import:onnxruntime",
    "call:deeppose.engine.detection.faces:FaceDetector.__init__",                  # loading the face model
    "call:deeppose.engine.backends.onnxruntime_backend:OnnxRuntimeRegressor.__init__",   # loading the stages
]
LIBRARY_MOMENTS = {"import:datetime", "import:cv2.version"}


@pytest.mark.slow
@pytest.mark.parametrize("moment", START_UP_MOMENTS)
def test_ctrl_c_at_every_moment_of_start_up_is_130_and_one_line(cuts, model_dir, tmp_path, moment):
    """SIGINT while the command starts (imports, native initialization, model loading): exit 130,
    one line, no traceback, no output. Before, a Ctrl-C while main.py imported the command line
    or main() parsed the options gave a traceback and -2, one inside numpy's C initialization
    numpy's "broken install" message and 1, one inside ONNX Runtime's a run on the float graphs
    ending 0 (the ImportError it became read as "not installed"), one inside OpenCV's loader
    nothing at all (a bare except dropped it: the run went on and ended 0)."""
    out = tmp_path / "o.mp4"
    rc, stdout, stderr = run_interrupted_at(moment, ["video", str(cuts["short"]), "-o", str(out), "--weights",
                                                     str(model_dir)], needed=moment not in LIBRARY_MOMENTS)
    err = [line for line in stderr.splitlines() if line.strip()]
    assert rc == 130 and len(err) == 1 and err[0].startswith("interrupted: main.py"), (rc, stderr[-3000:])
    assert "done:" not in stdout
    assert list(tmp_path.iterdir()) == []   # no output, no lock file


@pytest.mark.slow
def test_ctrl_c_at_the_first_frame_stops_after_it(cuts, model_dir, tmp_path):
    out = tmp_path / "o.mp4"
    rc, stdout, stderr = run_interrupted_at("call:deeppose.engine.pipeline:PosePipeline.process",
                                            ["video", str(cuts["short"]), "-o", str(out), "--weights", str(model_dir)])
    assert rc == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "interrupted after 1 frames" in stderr and video_facts(out)[0] == 1


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["atexit", "teardown"])
def test_ctrl_c_while_a_finished_run_exits_keeps_its_exit_code(cuts, model_dir, tmp_path, moment):
    """SIGINT once the run is done, while Python exits: in the last atexit callback, and while it
    destroys the modules (Python 3.11 has then restored SIGINT's default action: the signal
    killed the finished process, exit -2 and no line, the failure issue 23 saw). The exit code
    stays the run's, 0, and nothing is printed."""
    out = tmp_path / "o.mp4"
    rc, stdout, stderr = run_interrupted_at(moment, ["video", str(cuts["short"]), "-o", str(out), "--weights",
                                                     str(model_dir)])
    assert rc == 0 and stderr.strip() == "", (rc, stderr[-3000:])
    assert any(line.startswith("done: 8 frames") for line in stdout.splitlines()) and video_facts(out)[0] == 8


@pytest.mark.parametrize("argv,message", [(["--threads", "-3"], "--threads: must be >= 1"),
                                          (["--max-frames", "0"], "--max-frames: must be >= 1"),
                                          (["--backend", "gpu"], "--backend: invalid choice"),
                                          (["--min-confidence", "1.5"], "--min-confidence: expected a number from 0 to 1"),
                                          (["--min-confidence", "x"], "--min-confidence: expected a number from 0 to 1")])
def test_bad_options_are_one_line(cuts, argv, message, capsys):
    rc = main.main(["video", str(cuts["short"]), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_keypoints_flag_joints_outside_the_frame(tmp_path, suffix):
    """A 14-joint person whose ankles are predicted below a 640x360 frame (legs out of view) and
    whose right wrist is NaN: the file carries the LSP joint names, and in_frame is false for
    exactly those three joints (a joint on the frame's last pixel row is still in it)."""
    from deeppose.engine.keypoints import KeypointsWriter
    from deeppose.engine.pipeline import FrameResult, PersonResult
    from deeppose.engine.skeletons import LSP

    pose = np.column_stack([np.linspace(200, 400, LSP.k), np.linspace(20, 300, LSP.k)])
    pose[LSP.index("r_ankle")] = (250.0, 420.0)
    pose[LSP.index("l_ankle")] = (330.0, 361.0)
    pose[LSP.index("r_wrist")] = np.nan
    pose[LSP.index("head_top")] = (300.0, 359.4)
    person = PersonResult(3, np.array([300.0, 250.0, 200.0, 400.0]), np.array([300.0, 40.0, 20.0, 20.0]), "face",
                          pose[None], pose)
    path = tmp_path / f"kp{suffix}"
    writer = KeypointsWriter(path, LSP, {"width": 640, "height": 360})
    writer.write(FrameResult(0, 0.0, [person], 0.0, [0.0], 0.0, "torch", (640, 360), 1))
    writer.close()
    if suffix == ".jsonl":
        assert read_keypoints_header(path)["joints"] == list(LSP.joints)
    rec = read_keypoints(path)[0]["persons"][0]
    assert list(rec["joints"]) == list(LSP.joints)
    out = {name for name, v in rec["joints"].items() if not v["in_frame"]}
    assert out == {"r_ankle", "l_ankle", "r_wrist"}
    assert rec["joints"]["r_ankle"]["y"] == pytest.approx(420.0)   # still recorded where predicted


# -- several inputs, --jobs (issue 10 part 6) ---------------------------------------------------
def _tiny_clip(path: Path, frames: int, shade: int = 0) -> Path:
    """A small generated clip (96x64, 10 fps) with nobody in it: fast through the pipeline."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), (shade + 30 * i) % 256, np.uint8))
    writer.release()
    return path


def test_expand_inputs_folders_globs_and_duplicates(tmp_path):
    from deeppose.engine.video_cli import expand_inputs

    a, b = _tiny_clip(tmp_path / "a.mp4", 2), _tiny_clip(tmp_path / "b.mov", 2)
    (tmp_path / "a.pose.mp4").write_bytes(b"an earlier output")   # our own output: skipped
    (tmp_path / "notes.txt").write_text("not a video")
    assert expand_inputs([str(tmp_path)]) == [a, b]
    assert expand_inputs([str(tmp_path / "*.mp4"), str(a), str(tmp_path / "b.mov")]) == [a, b]
    assert expand_inputs(["missing.mp4"]) == [Path("missing.mp4")]   # reported when opened
    empty = tmp_path / "empty"
    empty.mkdir()
    for item in (str(empty), str(tmp_path / "*.avi")):
        with pytest.raises(ValueError, match="no video file"):
            expand_inputs([item])


@pytest.mark.parametrize("jobs", [1, 2])
def test_several_inputs_with_jobs_one_failing(tmp_path, capsys, model_dir, jobs):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    clips = [_tiny_clip(src / "a.mp4", 5), _tiny_clip(src / "b.mp4", 7, shade=90)]
    bad = src / "c.mp4"
    bad.write_bytes(os.urandom(3000))
    rc = main.main(["video", str(src), "--jobs", str(jobs), "--out-dir", str(out), "--keypoints", "jsonl",
                    "--weights", str(model_dir)])
    stdout = capsys.readouterr().out
    assert rc == 1, stdout   # one input failed
    lines = stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 1 and "c.mp4" in failed[0] and "error: cannot read" in failed[0]
    assert sum(line.startswith("ok ") for line in lines) == 2 and "2 of 3 inputs done, 1 failed" in stdout
    for clip, n in zip(clips, (5, 7)):
        video = out / f"{clip.stem}.pose.mp4"
        assert video_facts(video)[0] == n
        assert len(read_keypoints(out / f"{clip.stem}.pose.jsonl")) == n
        assert not (src / f"{clip.stem}.pose.mp4").exists()
    assert not (out / "c.pose.mp4").exists()


def test_several_inputs_bad_options(tmp_path, capsys):
    a, b = _tiny_clip(tmp_path / "a.mp4", 2), _tiny_clip(tmp_path / "b.mp4", 2)
    sub = tmp_path / "sub"
    sub.mkdir()
    c = _tiny_clip(sub / "a.mp4", 2)
    for extra, msg in ((["-o", str(tmp_path / "x.mp4")], "use --out-dir"),
                       (["--keypoints", str(tmp_path / "k.jsonl")], "the format only"),
                       (["--out-dir", str(tmp_path / "nope")], "not an existing folder")):
        rc = main.main(["video", str(a), str(b), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], err
    rc = main.main(["video", str(a), str(c), "--out-dir", str(tmp_path)])   # both would write a.pose.mp4
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "would both write" in err[0], err
    assert not list(tmp_path.glob("*.pose.mp4"))
