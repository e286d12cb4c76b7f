"""`main.py benchmark --peer FILE.task`: MediaPipe's pose landmarker side by side with our
pipeline (tools/eval/peer.py, tools/bench/benchmark.py; issue 10 part 5). No timings are asserted."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import main
from support import REPO, WALKING

PEER = REPO.parent / "shared" / "models" / "peers" / "pose_landmarker_full.task"


def test_peer_option_parses():
    args = main.build_parser().parse_args(["benchmark", "--peer", "x.task", "--peer-poses", "2"])
    assert args.peer == Path("x.task") and args.peer_poses == 2
    assert main.build_parser().parse_args(["benchmark"]).peer is None


@pytest.mark.parametrize("what", ["missing", "folder", "not a task bundle"])
def test_bad_peer_file_is_one_line_error(tmp_path, capsys, what):
    path = {"missing": tmp_path / "nope.task", "folder": tmp_path}.get(what, tmp_path / "bad.task")
    if what == "not a task bundle":
        path.write_bytes(b"not a zip archive" * 10)
    rc = main.main(["benchmark", "--peer", str(path), "--runs", "1", "--warmup", "0"])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("benchmark:")]
    assert rc == 2
    assert len(err) == 1 and str(path) in err[0], captured.err
    assert "Cascade only" not in captured.out   # failed before measuring anything


@pytest.mark.skipif(not PEER.is_file(), reason=f"peer model {PEER} absent")
@pytest.mark.skipif(not WALKING.is_file(), reason=f"{WALKING} absent")
def test_side_by_side_on_walking(random_model_dir):
    from deeppose.tools.bench.benchmark import format_side_by_side, measure_side_by_side
    from deeppose.tools.data.datasets import read_frames
    from deeppose.tools.eval.peer import MediaPipePeer

    frames = read_frames(WALKING, 3, start=30)
    with MediaPipePeer(PEER) as peer:
        found = peer.process(frames[0], 0.0)
    h, w = frames[0].shape[:2]
    assert found.shape == (1, 33, 2)   # the walker
    assert np.all(np.isfinite(found)) and 0 < np.median(found[0, :, 0]) < w and 0 < np.median(found[0, :, 1]) < h

    side = measure_side_by_side(random_model_dir, 3, 2, frames, PEER, peer_poses=1, runs=3, warmup=1)
    assert side["ours"]["per_frame"]["n"] == 3 and side["peer"]["per_frame"]["n"] == 3
    assert side["peer"]["persons_median"] == 1
    assert side["ratio"] == pytest.approx(side["ours"]["per_frame"]["median_ms"] / side["peer"]["per_frame"]["median_ms"])
    text = format_side_by_side(side)
    assert "MediaPipe pose_landmarker_full.task" in text and "ratio (ours / peer" in text


def test_peer_video_needs_peer(capsys):
    assert main.main(["benchmark", "--peer-video"]) == 2
    assert "--peer-video needs --peer" in capsys.readouterr().err


@pytest.mark.skipif(not PEER.is_file(), reason=f"peer model {PEER} absent")
@pytest.mark.skipif(not WALKING.is_file(), reason=f"{WALKING} absent")
def test_video_jobs_side_by_side(random_model_dir, tmp_path):
    """Both whole video jobs run as processes on a short cut and are accounted for."""
    from deeppose.tools.bench.benchmark import format_video_jobs, measure_video_jobs
    from support import cut_video

    clip = cut_video(WALKING, tmp_path / "walking4.mp4", 4)
    jobs = measure_video_jobs(clip, PEER, random_model_dir, max_persons=1)   # like the peer's num_poses 1
    for side in ("ours", "peer"):
        r = jobs[side]
        assert r["rc"] == 0, (side, r)
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_rss_mib"] > 50
    text = format_video_jobs(jobs, clip)
    assert "ratio (ours / peer, wall time)" in text and "--max-persons 1" in text


@pytest.mark.skipif(not WALKING.is_file(), reason=f"{WALKING} absent")
def test_benchmark_persons_2_measures_two_against_one_in_one_run(flic_weights, capsys, tmp_path):
    """`benchmark --persons 2` puts two persons against one in the same run: the cascade on one
    and two fixed boxes, and pipelines following at most one and at most two persons on the same
    frames, with the ratios printed and in the JSON (issue 10's target; no timing asserted)."""
    import json

    out_json = tmp_path / "b.json"
    rc = main.main(["benchmark", "--backend", "onnxruntime", "--persons", "2", "--runs", "4", "--warmup", "1",
                    "--weights", str(flic_weights), "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 persons against one, interleaved in one run" in out and "following mean" in out
    sc = json.loads(out_json.read_text())["results"][0]["persons_scaling"]
    assert sc["n"] == 2 and sc["cascade"]["n"]["n"] == 4 and sc["following"]["n"]["n"] == 4


def test_persons_scaling_report(random_model_dir):
    """measure_persons_scaling's figures: as many runs of each side, ratios of N over one, and
    the persons each follower drew (at most 1 and at most N)."""
    from deeppose.engine.backends import load_cascade
    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.pipeline import PosePipeline
    from deeppose.tools.bench.benchmark import measure_persons_scaling

    frames = [np.full((240, 320, 3), v, np.uint8) for v in (40, 90, 140)]
    cascade, _ = load_cascade(random_model_dir, "onnxruntime")
    boxes = np.array([[160.0, 120.0, 100.0, 200.0], [170.0, 120.0, 100.0, 200.0]])
    followers = tuple(PosePipeline(PipelineConfig(random_model_dir, "onnxruntime", max_persons=m,
                                                  full_frame_fallback=True)) for m in (1, 2))
    try:
        sc = measure_persons_scaling(cascade, frames, boxes, 3, runs=4, warmup=1, followers=followers)
    finally:
        for f in followers:
            f.close()
    c, f = sc["cascade"], sc["following"]
    assert sc["n"] == 2 and c["one"]["n"] == c["n"]["n"] == 4
    assert c["ratio_median"] == pytest.approx(c["n"]["median_ms"] / c["one"]["median_ms"])
    assert f["one"]["n"] == f["n"]["n"] == 4
    assert f["ratio_mean"] == pytest.approx(f["n"]["mean_ms"] / f["one"]["mean_ms"])
    assert f["one"]["persons_mean"] <= 1 and f["n"]["persons_mean"] <= 2
    assert measure_persons_scaling(cascade, frames, boxes, 3, runs=2, warmup=0)["following"] is None
