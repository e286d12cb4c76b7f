"""`python main.py benchmark`: latency and frames per second of each available backend.

Two measurements per backend, each a median and 90th percentile over ``--runs`` runs after
``--warmup`` runs:

1. Cascade: the cascade alone on a fixed b0 (``--persons`` copies of the person box found
   in the video), per stage (crop + network + update) and network only (the regressor calls).
2. End to end: ``engine.pipeline.PosePipeline.process`` on consecutive frames of
   ``walking.mp4`` (shared data): face detection (with its tracking windows), tracking, the
   cascade and smoothing, as the app and the video command run it. When the pipeline or the
   face detector cannot be used here, the end-to-end figures are the cascade's and the
   output says so.

3. Side by side (``--peer FILE.task``): our pipeline (``auto`` backend) and MediaPipe's pose
   landmarker (:mod:`tools.eval.peer`) on the same frames, interleaved frame by frame in one
   process so that both see the same load; ms per frame, fps, their ratio and the resident
   memory each adds when loaded. With ``--peer-video``, also the whole video job on
   ``--video``: ``main.py video`` and the peer's (``python -m deeppose.tools.eval.peer``) as
   processes run one after the other, wall time, CPU time and peak RSS of each.

Frames per second = 1 / median end-to-end latency. The machine (CPU, cores, threads, GPU,
load average before and after) is printed with the figures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeppose.engine.cli_args import (
    WeightsError,
    add_int8,
    add_precision,
    add_stages,
    add_threads,
    add_weights,
    positive_int,
    resolve_weights,
)
from deeppose.engine.constants import DEFAULT_MODEL, PACKAGE_ROOT, WEIGHTS_ROOT
from deeppose.tools.export.random_model import make_random_model

REPO = PACKAGE_ROOT
DEFAULT_WEIGHTS = WEIGHTS_ROOT / DEFAULT_MODEL


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's arguments to its sub-parser."""
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help="backend(s) to measure: all (default: every available one), auto, torch, "
                             "onnxruntime, tensorrt; repeat or comma-separate")
    add_weights(parser, default_text="flic; a random-weights model of the same shape when weights/flic is not "
                "trained yet")
    add_stages(parser)
    parser.add_argument("--persons", type=positive_int, default=1, metavar="N",
                        help="persons per frame in the cascade measurement; above 1 also N persons against one, "
                             "interleaved in one run: the cascade on 1 and N fixed boxes, and following at most 1 "
                             "and at most N persons end to end (default: 1)")
    parser.add_argument("--max-persons", type=positive_int, default=None, metavar="N",
                        help="end to end, side by side and in the video job: follow at most N persons, as "
                             "`video --max-persons` (1: one tracked person, like the peer's default; default: "
                             "everyone found)")
    parser.add_argument("--runs", type=positive_int, default=100, metavar="N",
                        help="measured runs per backend and measurement (default: 100)")
    parser.add_argument("--warmup", type=int, default=10, metavar="N", help="warm-up runs before measuring (default: 10)")
    add_threads(parser, "physical cores")
    add_int8(parser, default_text="the model's default, as the video command; --int8 measures ONNX Runtime both "
             "float and int8, and runs the side-by-side and video job in int8")
    add_precision(parser)
    parser.add_argument("--no-build", action="store_true", help="do not build missing TensorRT engines")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end pipeline measurement")
    parser.add_argument("--video", type=Path, default=None, metavar="FILE",
                        help="video for the frames (default: the shared walking.mp4)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--peer", type=Path, default=None, metavar="FILE",
                        help="also run a peer, MediaPipe's pose landmarker (a .task bundle, e.g. ../shared/models/peers/"
                             "pose_landmarker_full.task, VIDEO mode), on the same frames interleaved with our "
                             "pipeline (auto backend), and print both side by side with their ratio")
    parser.add_argument("--peer-video", action="store_true",
                        help="with --peer: also time the whole video job on --video (all frames) as two processes "
                             "run one after the other, `main.py video` and the peer's (decode, landmarks, drawing, "
                             "the same H.264 writer): wall time, CPU time and peak RSS of each")
    parser.add_argument("--peer-poses", type=positive_int, default=1, metavar="N",
                        help="most persons the peer looks for (default: 1, MediaPipe's default)")


# --------------------------------------------------------------------------- frames

# --------------------------------------------------------------------------- measuring

class TimedRegressor:
    """Wraps a regressor and records the seconds of each ``regress`` call (network only)."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds: list[float] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def regress(self, crops):
        import time
        t = time.perf_counter()
        out = self.inner.regress(crops)
        self.seconds.append(time.perf_counter() - t)
        return out


def summary(seconds) -> dict:
    """{"median_ms", "p90_ms", "n"} of a list of durations in seconds."""
    import numpy as np
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "n": 0}
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)), "n": int(a.size)}


def machine_info(threads: int) -> dict:
    """CPU model, physical/logical cores, OS, Python, library versions, GPU, load average."""
    import os
    import platform

    import torch

    from deeppose.engine.backends import physical_cores
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
            "threads": threads, "os": platform.platform(terse=True), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": None}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        info["gpu"] = f"{torch.cuda.get_device_name()} (sm_{major}{minor}, CUDA {torch.version.cuda})"
    try:
        info["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def variants(requested: list[str] | None, precision: str,
             int8: bool | None = None) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """(label, backend, options) to measure, and notes on the backends left out. ONNX Runtime
    runs the model's default precision (``int8`` None, label "onnxruntime-cpu"), float (False,
    "onnxruntime-cpu-float"), or with True twice, float and every stage in int8
    ("onnxruntime-cpu-int8"); ``auto`` follows ``int8`` too."""
    import torch

    from deeppose.engine.backends import backend_status, canonical_name
    status = backend_status()
    names: list[str] = []
    for item in requested or ["all"]:
        for part in item.split(","):
            part = part.strip()
            if part:
                names += list(status) if part == "all" else [canonical_name(part)]
    explicit = requested is not None and not any("all" in r.split(",") for r in requested)
    out, notes = [], []
    cuda = torch.cuda.is_available()
    for name in dict.fromkeys(names):
        if name == "auto":
            out.append(("auto", "auto", {"precision": precision, "int8": int8}))
            continue
        ok, why = status[name]
        if not ok:
            notes.append(f"{name}: not measured, {why}")
            continue
        if name == "torch" and cuda:
            out.append(("torch-cuda-fp16", "torch", {"device": "cuda", "fp16": True}))
            out.append(("torch-cuda-fp32", "torch", {"device": "cuda", "fp16": False}))
            if explicit:
                out.append(("torch-cpu", "torch", {"device": "cpu"}))
        elif name == "torch":
            out.append(("torch-cpu", "torch", {"device": "cpu"}))
        elif name == "onnxruntime":
            if int8 is None:   # the model's default precision (stage 3 in int8 for the shipped models)
                out.append(("onnxruntime-cpu", "onnxruntime", {}))
            else:
                out.append(("onnxruntime-cpu-float", "onnxruntime", {"int8": False}))
            if int8:
                out.append(("onnxruntime-cpu-int8", "onnxruntime", {"int8": True}))
        elif name == "tensorrt":
            out.append((f"tensorrt-{precision}", "tensorrt", {"precision": precision}))
    return out, notes


def measure_cascade(cascade, frames: list, b0, stages: int, runs: int, warmup: int) -> dict:
    """Per-stage, network-only and whole-cascade latency on fixed person boxes ``b0``."""
    import time

    timed = [TimedRegressor(r) for r in cascade.regressors]
    original = cascade.regressors
    cascade.regressors = timed
    stage_s: list[list[float]] = [[] for _ in range(stages)]
    net_s: list[list[float]] = [[] for _ in range(stages)]
    total: list[float] = []
    try:
        for i in range(warmup + runs):
            frame = frames[i % len(frames)]
            for t in timed:
                t.seconds.clear()
            t0 = time.perf_counter()
            res = cascade.run(frame, b0, stages)
            dt = time.perf_counter() - t0
            if i >= warmup:
                total.append(dt)
                for s in range(stages):
                    stage_s[s].append(res.stage_seconds[s])
                    net_s[s].append(sum(timed[s].seconds))
    finally:
        cascade.regressors = original
    return {"stages": [{**summary(stage_s[s]), "network": summary(net_s[s])} for s in range(stages)],
            "cascade": summary(total)}


def forth_and_back(n: int) -> list[int]:
    """Frame indices for playing ``n`` consecutive frames forth and back without repeating an
    end (0, 1, ..., n-1, n-2, ..., 1), so that a measurement longer than the clip never jumps;
    [0] for one frame."""
    return list(range(n)) + list(range(n - 2, 0, -1)) if n > 1 else [0]


def measure_pipeline(pipeline, frames: list, runs: int, warmup: int) -> dict:
    """End-to-end latency of ``pipeline.process`` on consecutive frames (played forth and back)."""
    import numpy as np

    order = forth_and_back(len(frames))
    det, cas, tot, persons = [], [], [], []
    pipeline.reset()   # same start (tracks, detector windows) for every backend
    for i in range(warmup + runs):
        j = order[i % len(order)]
        r = pipeline.process(frames[j], timestamp=i / 30.0, index=i)
        if i >= warmup:
            det.append(r.detect_seconds)
            cas.append(sum(r.stage_seconds))
            tot.append(r.total_seconds)
            persons.append(len(r.persons))
    return {"detector": summary(det), "cascade": summary(cas), "end_to_end": summary(tot),
            "persons_median": float(np.median(persons)) if persons else 0.0,
            "persons_max": int(max(persons)) if persons else 0}


def measure_persons_scaling(cascade, frames: list, boxes, stages: int, runs: int, warmup: int,
                            followers: tuple | None = None) -> dict:
    """N persons against one, interleaved in one run (issue 10's "two persons cost <= 1.5x one").

    The cascade runs on the first of ``boxes`` (N, 4) and on all N, alternately (which goes
    first alternates too), on the same frames; with ``followers`` (two pipelines following at
    most 1 and at most N persons) both process the same consecutive frames (played forth and
    back, from :meth:`reset`), alternately. Ratios are N over one, of medians and of means (a
    frame with a face search costs several plain ones, so the mean is the per-frame cost of a
    whole clip).

    Returns:
        {"n", "cascade": {"one", "n" (summaries, ms), "ratio_median"}, "following": {"one",
        "n" (summaries plus "mean_ms" and "persons_mean"), "ratio_median", "ratio_mean"} or None}.
    """
    import time

    import numpy as np

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    one, many = [], []
    for i in range(warmup + runs):
        frame = frames[i % len(frames)]
        for b, out in ((boxes[:1], one), (boxes, many)) if i % 2 == 0 else ((boxes, many), (boxes[:1], one)):
            t0 = time.perf_counter()
            cascade.run(frame, b, stages)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    report = {"n": len(boxes), "cascade": {"one": summary(one), "n": summary(many),
                                           "ratio_median": float(np.median(many) / np.median(one))},
              "following": None}
    if followers is not None:
        order = forth_and_back(len(frames))
        times: tuple[list, list] = ([], [])
        drawn: tuple[list, list] = ([], [])
        for p in followers:
            p.reset()
        for i in range(warmup + runs):
            j = order[i % len(order)]
            for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                r = followers[k].process(frames[j], timestamp=i / 30.0, index=i)
                if i >= warmup:
                    times[k].append(r.total_seconds)
                    drawn[k].append(len(r.persons))
        f = [{**summary(t), "mean_ms": 1000.0 * float(np.mean(t)), "persons_mean": float(np.mean(d))}
             for t, d in zip(times, drawn)]
        report["following"] = {"one": f[0], "n": f[1], "ratio_median": f[1]["median_ms"] / f[0]["median_ms"],
                               "ratio_mean": f[1]["mean_ms"] / f[0]["mean_ms"]}
    return report


# --------------------------------------------------------------------------- command

class _OptionError(Exception):
    """A bad option, model or peer file: its one line is printed and ``benchmark`` exits 2."""


def run(args) -> int:
    """Measure every requested backend and print the table; exit code 0, 1 when no backend
    could be measured, 2 on bad options or a bad model."""
    import logging

    import torch

    from deeppose.engine.backends import BackendError, physical_cores

    log = logging.getLogger("benchmark")
    tmp = None
    try:
        _check_peer(args)
        threads = args.threads or physical_cores()
        torch.set_num_threads(threads)
        machine = machine_info(threads)
        try:
            todo, notes = variants(args.backend, args.precision, args.int8)
        except BackendError as e:
            raise _OptionError(f"benchmark: {e}") from e
        weights, model_note, info, tmp = _model(args)
        stages = args.stages or len(info.stage_files)
        if not 1 <= stages <= len(info.stage_files):
            raise _OptionError(f"benchmark: --stages must be in 1..{len(info.stage_files)}")
        persons = max(1, int(args.persons))
        video, frames, frame_note = _frames(args)
        chosen = _print_header(args, weights, info, model_note, stages, frame_note, machine, notes)
        results = measure_backends(args, todo, weights, info, stages, threads, persons, frames)
        side = _peer(args, weights, stages, threads, frames, video)
    except _OptionError as e:
        if tmp is not None:
            tmp.cleanup()
        print(e, file=sys.stderr)
        return 2
    report(args, results, side, video, machine, stages=stages, persons=persons, weights=weights,
           model_note=model_note, info=info, frame_note=frame_note, chosen=chosen, notes=notes)
    if tmp is not None:
        tmp.cleanup()
    log.debug("done")
    if not any("error" not in r for r in results):
        print("benchmark: error: no backend could be measured (see the reasons above)", file=sys.stderr)
        return 1
    return 0


def _check_peer(args) -> None:
    """Check the peer options before any measuring: a bad peer file fails at once.

    Raises:
        _OptionError: ``--peer-video`` without ``--peer``, or a peer model that cannot be loaded.
    """
    if args.peer_video and args.peer is None:
        raise _OptionError("benchmark: error: --peer-video needs --peer FILE")
    if args.peer is not None:
        from deeppose.tools.eval.peer import MediaPipePeer, PeerError
        try:
            MediaPipePeer(args.peer).close()
        except PeerError as e:
            raise _OptionError(f"benchmark: error: {e}") from e


def _model(args):
    """The model to measure: (weights folder, a note on it, its ``ModelInfo``, the temporary
    folder to remove at the end or None). Without ``--weights``/``--model`` and with the default
    model not trained yet, a random-weights compact FLIC model of the same shapes (same speed).

    Raises:
        _OptionError: a bad ``--weights``/``--model`` or an unreadable manifest.
    """
    import tempfile

    from deeppose.engine.model import ModelError, read_manifest

    tmp = None
    if args.weights is None and args.model is None and not (DEFAULT_WEIGHTS / "manifest.json").is_file():
        tmp = tempfile.TemporaryDirectory(prefix="deeppose-bench-")
        weights = make_random_model(Path(tmp.name) / "random-flic")
        model_note = (f"random-weights compact FLIC model ({DEFAULT_WEIGHTS.relative_to(REPO)} is not trained yet; "
                      f"same shapes, so the same speed)")
    else:
        try:
            weights = resolve_weights(args.weights, args.model)
        except WeightsError as e:
            raise _OptionError(f"benchmark: {e}") from e
        model_note = str(weights)
    try:
        info = read_manifest(weights)
    except ModelError as e:
        if tmp is not None:
            tmp.cleanup()
        raise _OptionError(f"benchmark: {e}") from e
    return weights, model_note, info, tmp


def _frames(args) -> tuple[Path, list, str]:
    """(the video, 40 of its frames from frame 30, a note on them); one random 1280x720 frame
    when the video cannot be read.

    Raises:
        _OptionError: ``--peer-video`` with a ``--video`` that is not a file.
    """
    import numpy as np

    from deeppose.tools.data.datasets import read_frames, walking_video  # (cv2, scipy: not at --help)

    video = args.video or walking_video()
    if args.peer_video and not Path(video).is_file():
        raise _OptionError(f"benchmark: error: --peer-video needs a video file, {video} is not one")
    frames = read_frames(video, 40, start=30)
    if frames:
        frame_note = f"{video.name} frames 30..{30 + len(frames) - 1}, {frames[0].shape[1]}x{frames[0].shape[0]}"
    else:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)]
        frame_note = f"random 1280x720 frame ({video} not readable)"
    return video, frames, frame_note


def _print_header(args, weights: Path, info, model_note: str, stages: int, frame_note: str, machine: dict,
                  notes: list[str]) -> tuple[str, str]:
    """Print what is measured (model, frames, machine, load, runs, the ``auto`` choice) before
    measuring; returns the backend ``auto`` picks and why."""
    from deeppose.engine.backends import BackendError, resolve_backend

    try:
        chosen, chosen_reason = resolve_backend("auto", weights, args.precision)
    except BackendError as e:
        chosen, chosen_reason = "?", str(e)
    sk = info.skeleton
    header = [
        "deeppose benchmark",
        f"model:    {model_note}: {len(info.stage_files)} stages, preset {info.manifest.preset or '?'}, "
        f"{sk.name.upper()} k={sk.k}; running {stages} stage(s)",
        f"frames:   {frame_note}",
        f"machine:  {machine['cpu']}; {machine['physical_cores']} physical cores, {machine['logical_cpus']} logical; "
        f"{machine['threads']} threads; {machine['os']}; GPU: {machine['gpu'] or 'none'}",
        f"load:     load average {machine.get('load_average_before', '?')} (1, 5, 15 min) before measuring",
        f"runs:     {args.runs} measured after {args.warmup} warm-up, per backend; figures are median / p90 in ms",
        f"auto:     --backend auto picks {chosen} ({chosen_reason})",
    ]
    print("\n".join(header), flush=True)
    for n in notes:
        print(f"          {n}")
    return chosen, chosen_reason


def measure_backends(args, todo: list, weights: Path, info, stages: int, threads: int, persons: int,
                     frames: list) -> list[dict]:
    """Measure each backend variant of ``todo`` ((label, backend, options), :func:`variants`)
    in turn: the cascade on ``persons`` copies of the person box of the first frames, with
    ``--persons`` > 1 how the cascade and the pipeline scale from one person, and the pipeline
    end to end (the cascade's figures where the pipeline cannot run here). Returns one entry per
    variant, with ``error`` where it could not be loaded."""
    import time

    import numpy as np
    import torch

    from deeppose.engine.backends import BackendError, cascade_from, create_regressors, describe_regressors
    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.model import ModelError
    from deeppose.engine.pipeline import PosePipeline

    h, w = frames[0].shape[:2]
    # the video command's pipeline options; each variant sets its backend and backend options
    # (threads reach the backends that take them, and the face detector, the same for every variant)
    base = PipelineConfig.from_args(args, weights=weights, backend="auto", stages=stages, smooth=True,
                                    threads=threads, int8=None, precision=None)
    results = []
    b0 = None
    for label, backend, opts in todo:
        entry = {"label": label, "backend": backend, "options": opts}
        t0 = time.perf_counter()
        pipeline = None
        detector_note = None
        try:
            if backend == "tensorrt" and not args.no_build:
                _ensure_engines(info, opts.get("precision", "fp16"), persons)
            config = base.replace(backend=backend, **opts)
            if not args.no_pipeline:
                try:
                    pipeline = PosePipeline(config)
                except BackendError:
                    raise
                except Exception as e:  # pipeline or detector unavailable: cascade-only figures
                    detector_note = f"end-to-end pipeline not measured ({type(e).__name__}: {str(e).splitlines()[0]})"
                    pipeline = None
            if pipeline is not None:
                cascade = pipeline.cascade
            else:
                regs = create_regressors(info, backend, **config.backend_options())
                cascade = cascade_from(info, regs)
        except (BackendError, ModelError) as e:
            print(f"\n{label}: not measured: {e}")
            entry["error"] = str(e)
            results.append(entry)
            continue
        entry["load_seconds"] = time.perf_counter() - t0
        entry["description"] = describe_regressors(cascade.regressors)
        entry["resolved_backend"] = cascade.regressors[0].name

        if b0 is None:
            b0 = _person_box(pipeline, frames, w, h)
        boxes = np.repeat(b0[None], persons, axis=0)
        boxes[:, 0] += np.arange(persons) * 0.05 * b0[2]
        entry["cascade"] = measure_cascade(cascade, frames, boxes, stages, args.runs, args.warmup)
        if persons > 1:
            followers = None
            if pipeline is not None:
                followers = tuple(PosePipeline(config.replace(max_persons=m)) for m in (1, persons))
            try:
                entry["persons_scaling"] = measure_persons_scaling(cascade, frames, boxes, stages, args.runs,
                                                                   args.warmup, followers)
            finally:
                for f in followers or ():
                    f.close()
        if pipeline is not None:
            entry["pipeline"] = measure_pipeline(pipeline, frames, args.runs, args.warmup)
            pipeline.close()
        else:
            entry["pipeline_note"] = detector_note or "end-to-end pipeline not measured (--no-pipeline)"
        e2e = entry["pipeline"]["end_to_end"] if pipeline is not None else entry["cascade"]["cascade"]
        entry["fps"] = 1000.0 / e2e["median_ms"] if e2e["median_ms"] > 0 else float("nan")
        results.append(entry)
        del cascade, pipeline
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def _peer(args, weights: Path, stages: int, threads: int, frames: list, video: Path) -> dict | None:
    """With ``--peer``, our pipeline and the peer side by side (:func:`measure_side_by_side`),
    and with ``--peer-video`` both whole video jobs (:func:`measure_video_jobs`); None without.

    Raises:
        _OptionError: the peer model cannot be loaded.
    """
    if args.peer is None:
        return None
    from deeppose.tools.eval.peer import PeerError
    try:
        side = measure_side_by_side(weights, stages, threads, frames, args.peer, args.peer_poses, args.runs,
                                    args.warmup, int8=args.int8, max_persons=args.max_persons)
    except PeerError as e:
        raise _OptionError(f"benchmark: error: {e}") from e
    if args.peer_video:
        side["video_job"] = measure_video_jobs(video, args.peer, weights, args.int8, args.max_persons)
    return side


def report(args, results: list[dict], side: dict | None, video: Path, machine: dict, *, stages: int, persons: int,
           weights: Path, model_note: str, info, frame_note: str, chosen: tuple[str, str], notes: list[str]) -> None:
    """Print the table (:func:`format_table`), the side-by-side figures and video jobs, with the
    load average after measuring; with ``--json``, write the whole report there."""
    import json
    import os

    try:
        machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    print()
    print(format_table(results, stages, persons, machine))
    if side is not None:
        print()
        print(format_side_by_side(side))
        if side.get("video_job"):
            print()
            print(format_video_jobs(side["video_job"], video))
    sk = info.skeleton
    out = {"model": {"folder": str(weights), "note": model_note, "stages_run": stages, "k": sk.k,
                     "preset": info.manifest.preset},
           "frames": frame_note, "persons": persons, "max_persons": args.max_persons,
           "runs": args.runs, "warmup": args.warmup,
           "machine": machine, "auto": {"backend": chosen[0], "reason": chosen[1]}, "notes": notes,
           "results": results, "side_by_side": side}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")

def rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux /proc; NaN elsewhere)."""
    import os
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure_side_by_side(weights: Path, stages: int, threads: int, frames: list, peer_path: Path,
                         peer_poses: int, runs: int, warmup: int, int8: bool | None = None,
                         max_persons: int | None = None) -> dict:
    """Our ``PosePipeline`` (auto backend; following at most ``max_persons`` persons, None:
    everyone) and the peer on the same frames, interleaved.

    Ours runs the model's default precision (``int8`` None), float (False) or int8 (True). Each of ``warmup + runs`` steps takes the next frame (played forth and back, timestamps
    1/30 s apart) and runs ours, then the peer, on it; each side's whole per-frame job is
    timed (the peer's BGR -> RGB conversion included). Both run in this process, so the load
    is the same for both; memory is given as the resident memory each adds when loaded.

    Returns:
        {"ours": {...}, "peer": {...}, "ratio": our median ms / peer median ms, "peak_rss_mib"}:
        each side has "name", "per_frame" (median_ms, p90_ms, n), "fps", "persons_median",
        "load_seconds", "rss_added_mib".
    Raises:
        tools.eval.peer.PeerError: the peer model cannot be loaded (one line).
    """
    import time

    import numpy as np

    from deeppose.engine.config import PipelineConfig
    from deeppose.engine.pipeline import PosePipeline
    from deeppose.tools.eval.peer import MediaPipePeer

    rss0, t0 = rss_mib(), time.perf_counter()
    peer = MediaPipePeer(peer_path, num_poses=peer_poses)
    peer_load, rss1 = time.perf_counter() - t0, rss_mib()
    try:
        t0 = time.perf_counter()
        ours = PosePipeline(PipelineConfig(weights, "auto", stages, smooth=True, threads=threads,
                                           max_persons=max_persons, int8=int8))
        ours_load, rss2 = time.perf_counter() - t0, rss_mib()
        order = forth_and_back(len(frames))
        t_ours, t_peer, n_ours, n_peer = [], [], [], []
        try:
            for i in range(warmup + runs):
                frame = frames[order[i % len(order)]]
                t = time.perf_counter()
                r = ours.process(frame, timestamp=i / 30.0, index=i)
                t_mid = time.perf_counter()
                found = peer.process(frame, i / 30.0)
                t_end = time.perf_counter()
                if i >= warmup:
                    t_ours.append(t_mid - t)
                    t_peer.append(t_end - t_mid)
                    n_ours.append(len(r.persons))
                    n_peer.append(len(found))
            name = ours.backend_description.split(" [")[0]
        finally:
            ours.close()
    finally:
        peer.close()

    def side(label, seconds, persons, load, rss):
        s = summary(seconds)
        return {"name": label, "per_frame": s, "fps": 1000.0 / s["median_ms"] if s["median_ms"] > 0 else float("nan"),
                "persons_median": float(np.median(persons)) if persons else 0.0, "load_seconds": load,
                "rss_added_mib": rss}

    mine = side(f"deeppose ({name})", t_ours, n_ours, ours_load, rss2 - rss1)
    other = side(f"MediaPipe {peer_path.name} (VIDEO mode, num_poses {peer_poses})", t_peer, n_peer, peer_load,
                 rss1 - rss0)
    ratio = mine["per_frame"]["median_ms"] / other["per_frame"]["median_ms"]
    return {"ours": mine, "peer": other, "ratio": ratio, "runs": runs, "warmup": warmup,
            "peak_rss_mib": peak_rss_mib()}


def _timed_process(cmd: list[str]) -> dict:
    """Run ``cmd`` (output discarded); its exit code, wall seconds, CPU seconds (user + system,
    from os.wait4) and peak resident memory in MiB.

    The peak is the child's VmHWM (/proc/PID/status), read every 0.05 s until it exits: the
    rusage maximum of a child also counts the memory of this process it was forked from.
    NaN where /proc is missing.
    """
    import os
    import subprocess
    import time

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kib = float("nan")
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kib = float(line.split()[1])
                        peak_kib = kib if peak_kib != peak_kib else max(peak_kib, kib)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": peak_kib / 1024}


_INT8_FLAG = {True: "--int8", False: "--no-int8", None: ""}
"""The video command's flag for ``int8`` True / False / None (the model's default)."""


def measure_video_jobs(video: Path, peer_path: Path, weights: Path, int8: bool | None = None,
                       max_persons: int | None = None) -> dict:
    """``main.py video VIDEO`` (defaults, the auto backend, ``--max-persons`` when given, ``--int8`` /
    ``--no-int8`` when ``int8`` is True / False) and the peer's video job
    (:func:`tools.eval.peer.video_job`) on the whole of ``video``, one process after the other,
    each writing into a temporary folder; see :func:`_timed_process` for the figures."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deeppose-peer-video-") as tmp:
        ours = _timed_process([sys.executable, str(REPO / "main.py"), "video", str(video), "-o",
                               str(Path(tmp) / "ours.mp4"), "--weights", str(weights)]
                              + _INT8_FLAG[int8].split()
                              + (["--max-persons", str(max_persons)] if max_persons else []))
        peer = _timed_process([sys.executable, "-m", "deeppose.tools.eval.peer", str(peer_path), str(video),
                               str(Path(tmp) / "peer.mp4")])
    return {"ours": ours, "peer": peer, "wall_ratio": ours["wall_s"] / peer["wall_s"], "int8": int8,
            "max_persons": max_persons}


def format_video_jobs(jobs: dict, video: Path) -> str:
    """The printed table of :func:`measure_video_jobs`."""
    ours = " ".join(filter(None, ("main.py video (deeppose)", _INT8_FLAG[jobs.get("int8")])))
    ours += f" --max-persons {jobs['max_persons']}" if jobs.get("max_persons") else ""
    width = max(34, len(ours) + 2)
    lines = [f"Whole video job on {video.name} (decode, pose, draw, H.264 encode), one process after the other:",
             f"{'':<{width}}{'wall s':>8}{'CPU s':>8}{'peak RSS':>12}{'exit':>6}"]
    for label, r in ((ours, jobs["ours"]), ("MediaPipe pose landmarker", jobs["peer"])):
        lines.append(f"{label:<{width}}{r['wall_s']:8.1f}{r['cpu_s']:8.1f}{r['peak_rss_mib']:8.0f} MiB{r['rc']:6d}")
    lines.append(f"ratio (ours / peer, wall time): {jobs['wall_ratio']:.2f}")
    return "\n".join(lines)


def format_side_by_side(side: dict) -> str:
    """The printed side-by-side table of :func:`measure_side_by_side`."""
    rows = [side["ours"], side["peer"]]
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"Side by side, interleaved on the same frames ({side['runs']} runs after {side['warmup']} warm-up); "
             f"whole per-frame job, ms:",
             f"{'':<{width}}{'median':>8}{'p90':>8}{'fps':>8}{'persons':>9}{'load s':>8}{'RSS added':>11}"]
    for r in rows:
        p = r["per_frame"]
        lines.append(f"{r['name']:<{width}}{p['median_ms']:8.1f}{p['p90_ms']:8.1f}{r['fps']:8.1f}"
                     f"{r['persons_median']:9g}{r['load_seconds']:8.1f}{r['rss_added_mib']:8.0f} MiB")
    lines.append(f"ratio (ours / peer, median ms per frame): {side['ratio']:.2f}; "
                 f"peak RSS of this process (both loaded, every backend measured): {side['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)


def _person_box(pipeline, frames: list, w: int, h: int):
    """b0 of the most confident person the pipeline's detector finds in the frames, or a
    centred box of 0.4 x 0.8 of the frame height."""
    import numpy as np
    if pipeline is not None:
        for frame in frames[:5]:
            try:
                found = pipeline.detector.detect(frame)
            except Exception:  # detector trouble: use the default box
                break
            if len(found.b0):
                return np.asarray(found.b0[0], dtype=np.float64)
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0, 0.4 * h, 0.8 * h])


def _ensure_engines(info, precision: str, persons: int) -> None:
    """Build the model's TensorRT engines for this machine when they are missing or stale."""
    from deeppose.engine.backends.tensorrt_backend import DEFAULT_MAX_PERSONS, find_engines
    from deeppose.engine.model import ModelError
    from deeppose.tools.export.build_engines import build_engines
    try:
        find_engines(info, precision)
    except ModelError as e:
        print(f"          tensorrt: {e}\n          tensorrt: building the engines now (takes a minute or two)")
        build_engines(info, precision, max(DEFAULT_MAX_PERSONS, persons))


def _fmt(s: dict) -> str:
    return f"{s['median_ms']:7.1f} /{s['p90_ms']:7.1f}"


def _name(r: dict) -> str:
    desc = r["description"].split(" [")[0]
    return f"auto -> {desc}" if r["label"] == "auto" else desc


def format_table(results: list[dict], stages: int, persons: int, machine: dict) -> str:
    """The printed tables: cascade per stage, end to end, and the GPU speed-up line."""
    ok = [r for r in results if "cascade" in r]
    if not ok:
        return "no backend could be measured"
    width = max(len(_name(r)) for r in ok) + 2
    cell = 25
    lines = [f"Cascade only, {persons} person(s) on a fixed b0; ms median / p90; stage = crop + network + update, "
             f"(network alone):"]
    head = "".join(f"{f'stage {s + 1}':>{cell}}" for s in range(stages))
    lines.append(f"{'backend':<{width}}{'load s':>7}{head}{'cascade':>17}")
    for r in ok:
        c = r["cascade"]
        cols = "".join(f"{_fmt(st)} ({st['network']['median_ms']:5.1f})".rjust(cell) for st in c["stages"])
        lines.append(f"{_name(r):<{width}}{r['load_seconds']:7.1f}{cols}{_fmt(c['cascade']):>17}")
    lines.append("")
    lines.append("End to end: PosePipeline.process on consecutive frames (face detection + tracking + cascade + "
                 "smoothing); ms median / p90:")
    lines.append(f"{'backend':<{width}}{'detector':>17}{'cascade':>17}{'total':>17}{'fps':>8}  persons/frame")
    for r in ok:
        if "pipeline" in r:
            p = r["pipeline"]
            lines.append(f"{_name(r):<{width}}{_fmt(p['detector']):>17}{_fmt(p['cascade']):>17}"
                         f"{_fmt(p['end_to_end']):>17}{r['fps']:8.1f}  {p['persons_median']:g} (max {p['persons_max']})")
        else:
            c = _fmt(r["cascade"]["cascade"])
            lines.append(f"{_name(r):<{width}}{'--':>17}{c:>17}{c:>17}{r['fps']:8.1f}  {persons}  "
                         f"(cascade only: {r['pipeline_note']})")
    scaled = [r for r in ok if "persons_scaling" in r]
    if scaled:
        n = scaled[0]["persons_scaling"]["n"]
        lines.append("")
        lines.append(f"{n} persons against one, interleaved in one run (issue 10's target: <= 1.5x); ms; cascade on "
                     f"1 and {n} fixed boxes (median), following at most 1 and at most {n} persons end to end "
                     f"(mean over the frames, median; persons drawn per frame):")
        for r in scaled:
            sc = r["persons_scaling"]
            c = sc["cascade"]
            line = (f"{_name(r):<{width}}cascade {c['one']['median_ms']:.1f} / {c['n']['median_ms']:.1f} "
                    f"= {c['ratio_median']:.2f}x")
            f = sc["following"]
            if f is not None:
                line += (f";  following mean {f['one']['mean_ms']:.1f} / {f['n']['mean_ms']:.1f} = {f['ratio_mean']:.2f}x, "
                         f"median {f['one']['median_ms']:.1f} / {f['n']['median_ms']:.1f} = {f['ratio_median']:.2f}x "
                         f"({f['one']['persons_mean']:.2f} / {f['n']['persons_mean']:.2f} persons)")
            lines.append(line)
    gpu = [r for r in ok if r["options"].get("device") == "cuda" or r["backend"] == "tensorrt"]
    base = next((r for r in ok if r["label"] == "torch-cuda-fp32"), None)
    if gpu and base:
        best = max(gpu, key=lambda r: r["fps"])
        ratio = best["fps"] / base["fps"] if base["fps"] else float("nan")
        net_best = sum(st["network"]["median_ms"] for st in best["cascade"]["stages"])
        net_base = sum(st["network"]["median_ms"] for st in base["cascade"]["stages"])
        lines.append("")
        lines.append(f"fastest GPU backend: {best['label']}: {best['fps']:.1f} fps end to end "
                     f"({ratio:.2f}x PyTorch CUDA fp32), {1000.0 / best['cascade']['cascade']['median_ms']:.0f} fps "
                     f"cascade only, networks {net_base / max(net_best, 1e-9):.2f}x faster than PyTorch CUDA fp32")
    lines.append("")
    la = machine.get("load_average_after")
    lines.append(f"load average after: {la if la else '?'}")
    return "\n".join(lines)
