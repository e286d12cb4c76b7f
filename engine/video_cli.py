"""`python main.py video INPUT [INPUT ...]`: video files in, annotated videos and keypoints out.

Every frame of INPUT goes through :class:`engine.pipeline.PosePipeline` (faces -> b0 -> the
cascade, all persons of a frame in one batch per stage; persons tracked across frames by box
overlap, a missed face's b0 held briefly, joints One-Euro smoothed per person), is drawn with
:func:`engine.drawing.draw_poses` and recorded by :class:`engine.recording.PoseRecorder`:
OUTPUT holds every decodable frame of INPUT (see Decoding below). Inputs and outputs are checked
before any work (an output, or its lock file, that is an input, by file identity, is refused;
with several inputs, an earlier NAME.pose.mp4 of an input NAME is skipped) and the outputs
are locked while written (:class:`engine.recording.OutputLock`: a second run writing the same
file is refused); an interrupted run (Ctrl-C, SIGTERM, an error) keeps every frame done so far
in a playable OUTPUT and in the keypoints file.

Several inputs (files, folders, glob patterns) run as ``--jobs N`` worker processes, each with
a progress bar, under an overall one; each input gets its own outputs (next to it, or in
``--out-dir``) and its own locks, and a failing input is reported in one line while the
others go on.

Decoding (:class:`engine.frames.VideoFile`, PyAV): damaged frames are skipped and counted in
one ``note:`` line (and in a ``--jobs`` summary line), and an input is given up after
:data:`engine.frames.MAX_UNREADABLE_RUN` unreadable frames in a row; OUTPUT has the input's
display size (non-square pixels are resampled to square ones right after decoding), and every
frame keeps its source time (its presentation timestamp times the keypoints, the One-Euro
smoothing and OUTPUT, so variable frame rates are kept).

Exit codes: 0 done, 2 bad input (nothing written), 1 failed mid-way, 130 interrupted; with
several inputs, 0 only when every input is done, else 1 (130 when interrupted).
Module-level imports stay light (argparse only): ``main.py --help`` imports every command.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli_args import (
    DEFAULT_FLIP,
    add_backend,
    add_flip,
    add_int8,
    add_live_outputs,
    add_stages,
    add_threads,
    add_weights,
    int8_problem,
    name_problem,
    output_problem,
    positive_int,
)

VIDEO_SUFFIXES = (".mp4",)
# Files a folder or glob INPUT contributes (what OpenCV's FFmpeg reads); our own outputs
# (NAME.pose.mp4) are left out, so that a second run over a folder does not process them.
INPUT_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
OUTPUT_TAG = ".pose"
KEYPOINTS_FORMATS = {"jsonl": ".jsonl", "csv": ".csv", "coco": ".coco.json"}
"""``--keypoints FORMAT`` (several inputs, or a bare format): the suffix of NAME.pose.SUFFIX."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``video`` command's arguments."""
    parser.add_argument("input", metavar="INPUT", nargs="+",
                        help="video file (anything FFmpeg can read), a folder (its video files), or a glob "
                        "pattern such as 'clips/*.mp4'; several may be given")
    parser.add_argument("-o", "--output", metavar="FILE.mp4",
                        help="annotated video (H.264 MP4; default: NAME.pose.mp4 next to INPUT); one input only")
    parser.add_argument("--out-dir", metavar="DIR", default=None,
                        help="write each input's NAME.pose.mp4 (and keypoints) into DIR instead of next to it")
    parser.add_argument("--keypoints", metavar="FILE", help="also write keypoints: FILE.jsonl (one JSON object "
                        "per frame), FILE.csv (one row per person per frame) or FILE.coco.json (a COCO keypoints "
                        "dataset: frames as images, persons as annotations); with several inputs, give just the "
                        "format, jsonl, csv or coco, for a NAME.pose.jsonl|csv|coco.json beside each video")
    parser.add_argument("--jobs", type=positive_int, metavar="N", default=1,
                        help="process N inputs at once in worker processes, each with --threads cores / N "
                        "inference threads by default (default: 1)")
    add_weights(parser)
    add_backend(parser)
    add_stages(parser)
    parser.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                        help="One-Euro smoothing of each person's joints across frames (default: on; "
                        "min_cutoff 1 Hz, beta 5 per box size per second, d_cutoff 1 Hz)")
    parser.add_argument("--draw-boxes", action="store_true",
                        help="also draw each person's b0 box (dashed when held) and face box")
    parser.add_argument("--min-confidence", type=_confidence, default=None, metavar="F",
                        help="do not draw joints whose confidence is below F, 0..1 (models that give "
                        "one, e.g. --model body; default 0.2; 0 draws every joint); the keypoints "
                        "files keep every joint with its confidence")
    parser.add_argument("--max-frames", type=positive_int, metavar="N",
                        help="stop after the first N frames (default: the whole video)")
    add_threads(parser)
    add_int8(parser)
    add_tracking_options(parser)
    add_live_outputs(parser)


def _confidence(text: str) -> float:
    """``--min-confidence``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """Person tracking options (engine.pipeline.PosePipeline): tracking by pose, the face
    detection interval, confirmation of new persons, rotated b0."""
    parser.add_argument("--detect-every", type=positive_int, metavar="N", default=None,
                        help="run the face detector every N-th frame to find newcomers while the persons are "
                        "tracked by pose (and whenever one is new or lost); 1: every frame (default: 5)")
    parser.add_argument("--recheck-every", type=positive_int, metavar="N", default=None,
                        help="once --max-persons persons are tracked (no newcomer is looked for), run the face "
                        "detector only every N-th frame, to find the tracked faces again, and at least every 1/3 s "
                        "(default: 10)")
    parser.add_argument("--track-by-pose", action=argparse.BooleanOptionalAction, default=True,
                        help="take each tracked person's next b0 from the eyes and nose of their pose, and check "
                        "every estimate (default: on)")
    parser.add_argument("--confirm", type=positive_int, metavar="N", default=3,
                        help="confirm a new person once detected in N of their first N+2 frames; he is then "
                        "drawn from his first frame, the video written N+1 frames late (default: 3)")
    parser.add_argument("--max-persons", type=positive_int, metavar="N", default=None,
                        help="follow at most N persons, those tracked longest; faces found beyond them are "
                        "ignored until one is lost (default: everyone found)")
    add_flip(parser, default=DEFAULT_FLIP)
    parser.add_argument("--rotate", action="store_true",
                        help="rotated b0: turn each person's crops with the roll of their face (tilted or lying "
                        "persons; default: off)")


def _error(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _check_writable_dir(path: Path, what: str) -> str | None:
    """None if a file can be created in ``path``'s existing folder, else a one-line reason."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return f"cannot write {what} {path}: folder {folder} does not exist"
    problem = name_problem(path, what)   # before any call that would fail on the name
    if problem:
        return problem
    if path.is_dir():
        return f"cannot write {what} {path}: it is a folder"
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"cannot write {what} {path}: permission denied"
    return output_problem(path, what)   # a real probe file: e.g. /proc passes os.access for root


def expand_inputs(items: list[str]) -> list[Path]:
    """The input files that INPUT arguments name, in order, each once.

    A folder contributes its video files (:data:`INPUT_SUFFIXES`, sorted, not recursive), a
    pattern with ``*``, ``?`` or ``[`` that names no existing file contributes its matches
    (the same filter), anything else is taken as a file as given (checked when it is opened).
    Our own outputs (``*.pose.mp4``) are skipped in folders and patterns.

    Raises:
        ValueError: a folder or pattern without any video file (one line).
    """
    import glob

    def videos(paths) -> list[Path]:
        return sorted(p for p in paths if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                      and not p.stem.endswith(OUTPUT_TAG))

    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = videos(path.iterdir())
            if not found:
                raise ValueError(f"folder {path} holds no video file ({', '.join(INPUT_SUFFIXES)})")
        elif not path.exists() and any(c in item for c in "*?["):
            found = videos(Path(p) for p in glob.glob(item))
            if not found:
                raise ValueError(f"no video file matches {item}")
        else:
            found = [path]
        out += found
    unique: dict[str, Path] = {}
    for p in out:
        unique.setdefault(os.path.abspath(p), p)
    return list(unique.values())


def skip_earlier_outputs(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(inputs to process, inputs skipped): an input named ``NAME.pose.mp4`` whose source, a
    video ``NAME.*`` in the same folder, is among the inputs too is an earlier run's output (a
    second ``video clips/*.mp4``, the shell expanding the pattern), not processed again."""
    sources = {(os.path.abspath(p.parent), p.stem) for p in inputs if p.suffix.lower() in INPUT_SUFFIXES}
    keep: list[Path] = []
    skipped: list[Path] = []
    for p in inputs:
        is_output = p.suffix.lower() in VIDEO_SUFFIXES and p.stem.endswith(OUTPUT_TAG)
        if is_output and (os.path.abspath(p.parent), p.stem[:-len(OUTPUT_TAG)]) in sources:
            skipped.append(p)
        else:
            keep.append(p)
    return keep, skipped


def output_paths(input_path: Path, args, several: bool) -> tuple[Path, Path | None]:
    """(annotated video, keypoints file or None) of one input, from -o, --out-dir and --keypoints."""
    if args.output and not several:
        output = Path(args.output)
    else:
        folder = Path(args.out_dir) if args.out_dir else input_path.parent
        output = folder / f"{input_path.stem}{OUTPUT_TAG}.mp4"
    keypoints = None
    if args.keypoints:
        fmt = args.keypoints.lower().lstrip(".")
        if several or fmt in KEYPOINTS_FORMATS:
            keypoints = output.with_suffix(KEYPOINTS_FORMATS[fmt])
        else:
            keypoints = Path(args.keypoints)
    return output, keypoints


def run(args) -> int:
    """Run the ``video`` command; returns the exit code (see module docstring)."""
    if int8_problem(args):
        return _error(int8_problem(args))
    from .config import PipelineConfig

    try:   # every pipeline option checked before any work (--model/--weights: WeightsError)
        config = PipelineConfig.from_args(args)
    except ValueError as e:
        return _error(str(e))
    try:
        inputs = expand_inputs(args.input)
    except ValueError as e:
        return _error(str(e))
    if len(inputs) > 1:
        inputs, skipped = skip_earlier_outputs(inputs)
        if skipped:
            print(f"note: skipped {len(skipped)} input(s) that are earlier outputs of other inputs: "
                  + ", ".join(map(str, skipped)), file=sys.stderr)
    several = len(inputs) > 1
    if several and args.output:
        return _error(f"-o/--output names one file, but {len(inputs)} inputs were given; use --out-dir DIR")
    if several and args.keypoints and args.keypoints.lower().lstrip(".") not in KEYPOINTS_FORMATS:
        return _error("with several inputs, --keypoints takes the format only: jsonl, csv or coco")
    if several and (getattr(args, "serve", None) or getattr(args, "osc", None)):
        return _error(f"--serve and --osc stream one input, but {len(inputs)} inputs were given")
    if args.out_dir:
        out_dir = Path(args.out_dir)
        if not out_dir.is_dir():
            return _error(f"--out-dir {out_dir} is not an existing folder")
    if not several:
        output, keypoints = output_paths(inputs[0], args, False)
        return run_one(args, config, inputs[0], output, keypoints)[0]
    from .outputs import overwrite_problem

    outputs = [output_paths(p, args, True) for p in inputs]
    seen: dict[str, Path] = {}
    for p, (o, _) in zip(inputs, outputs):
        other = seen.setdefault(os.path.abspath(o), p)
        if other is not p:
            return _error(f"{other} and {p} would both write {o}; use separate runs or rename one")
    # Every output (video, keypoints, lock) against every input, before any work: a job must
    # never write a file that another job reads.
    problem = overwrite_problem([(path, what) for o, k in outputs
                                 for path, what in ((o, "output video"), (k, "keypoints file"))], inputs)
    if problem:
        return _error(problem)
    return _run_many(args, config, inputs, outputs)


def _job(args, config, input_path: Path, output: Path, keypoints: Path | None, position: int) -> tuple[int, str]:
    """One input of a several-input run (in a worker process, or in this one with --jobs 1):
    (exit code, its one-line report)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(_TeeTqdm(err)):
        code, summary = run_one(args, config, input_path, output, keypoints, position=position, quiet=True)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 0:
        return code, f"{input_path}: {summary or 'done'}"
    reason = next((line for line in lines if line.startswith("error: ")), lines[-1] if lines else f"exit {code}")
    return code, f"{input_path}: {reason}"


class _TeeTqdm:
    """stderr for a worker: tqdm's bar output (carriage returns, cursor moves) goes to the real
    stderr, every other line is kept for the one-line report."""

    def __init__(self, keep):
        self.keep = keep
        self.real = sys.__stderr__

    def write(self, text: str) -> int:
        if "\r" in text or "\x1b[" in text:
            return self.real.write(text)
        return self.keep.write(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()


def _init_worker(lock) -> None:
    """Worker process start: share tqdm's lock (bars do not overwrite each other); Ctrl-C is
    ignored between inputs and handled by each run (stop after the current frame)."""
    import signal

    from tqdm import tqdm

    from .cli_args import safe_console
    safe_console()   # a fresh process: its bars print the input's name too
    tqdm.set_lock(lock)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_many(args, config, inputs: list[Path], outputs: list[tuple[Path, Path | None]]) -> int:
    """Several inputs in ``--jobs`` worker processes (``config``: the pipeline options, its
    ``threads`` shared among the jobs when not given); one line per input, an overall bar."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from .backends import physical_cores

    jobs = min(args.jobs, len(inputs))
    if config.threads is None:
        config = config.replace(threads=max(1, physical_cores() // jobs))
    print(f"{len(inputs)} inputs, {jobs} job(s) at once, {config.threads} inference thread(s) each", flush=True)
    overall = tqdm(total=len(inputs), unit="file", desc="all", position=0, dynamic_ncols=True,
                   disable=not sys.stderr.isatty(), file=sys.stderr)
    codes: list[int] = []

    def report(code: int, line: str) -> None:
        codes.append(code)
        overall.write(("ok     " if code == 0 else "FAILED ") + line, file=sys.stdout)
        overall.update(1)

    try:
        if jobs == 1:   # in this process: no start-up cost, and the same code path as one input
            for p, (o, k) in zip(inputs, outputs):
                report(*_job(args, config, p, o, k, 1))
                if codes[-1] == 130:
                    break
        else:
            ctx = multiprocessing.get_context("spawn")   # no fork of a process with threads
            lock = ctx.RLock()
            tqdm.set_lock(lock)
            pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(lock,))
            futures = {pool.submit(_job, args, config, p, o, k, 1 + i % jobs): p
                       for i, (p, (o, k)) in enumerate(zip(inputs, outputs))}
            try:
                for f in as_completed(futures):
                    try:
                        report(*f.result())
                    except Exception as e:   # the worker process died (killed, out of memory)
                        report(1, f"{futures[f]}: error: worker failed: {type(e).__name__}: {e}")
            finally:
                # Ctrl-C: inputs not started are dropped; running ones stop after their frame
                # (each keeps a playable video), and this waits for them.
                pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        codes.append(130)
    finally:
        overall.close()
    failed = sum(c != 0 for c in codes)
    done = len(codes) - failed
    print(f"{done} of {len(inputs)} inputs done" + (f", {failed} failed" if failed else ""), flush=True)
    if 130 in codes:
        return 130
    return 0 if done == len(inputs) else 1


def run_one(args, config, input_path: Path, output: Path, keypoints: Path | None, position: int = 0,
            quiet: bool = False) -> tuple[int, str]:
    """The ``video`` command on one input.

    Args:
        args: the command's arguments (outputs, drawing, live outputs; the pipeline's are in ``config``).
        config: the pipeline options (:class:`engine.config.PipelineConfig`).
        position: the line of its progress bar.
        quiet: leave out the backend and input lines and print no summary (several-input runs
            report one line each).
    Returns:
        (exit code, see the module docstring; the one-line summary of a quiet run, else "").
    """
    # -- check everything before any work ---------------------------------------------------
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        return _error(f"output {output} must be an .mp4 file"), ""
    if keypoints is not None and not keypoints.name.lower().endswith((".jsonl", ".csv", ".coco.json")):
        return _error(f"keypoints file {keypoints} must end in .jsonl, .csv or .coco.json"), ""
    from .outputs import overwrite_problem, same_file

    outputs = ((output, "output video"), (keypoints, "keypoints file"))
    problem = overwrite_problem(outputs, [input_path])
    if problem:
        return _error(problem), ""
    for path, what in outputs:
        problem = _check_writable_dir(path, what) if path is not None else None
        if problem:
            return _error(problem), ""
    if keypoints is not None and same_file(keypoints, output):
        return _error("the keypoints file and the output video are the same file"), ""
    from .frames import SourceError, open_source

    try:
        opened = open_source(input_path)
    except SourceError as e:
        return _error(str(e)), ""

    from .recording import OutputLock, RecordingError

    # Taken before any work: a second run writing the same files is refused at once (and
    # creating the lock files proves that the folders can be written, e.g. not /proc).
    try:
        lock = OutputLock([output, keypoints])
    except RecordingError as e:
        opened.release()
        return _error(str(e)), ""
    from .streaming import StreamError, open_live_outputs

    try:   # listening (and its address printed) before the model loads and the first frame
        live = open_live_outputs(getattr(args, "serve", None), getattr(args, "osc", None),
                                 announce=lambda line: print(line, file=sys.stderr if line.startswith("note:")
                                                             else sys.stdout, flush=True))
    except StreamError as e:
        opened.release()
        lock.release()
        return _error(str(e)), ""
    try:
        return _process(args, config, input_path, output, keypoints, opened, position, quiet, live)
    finally:
        if live is not None:
            live.close()
        lock.release()


def _process(args, config, input_path: Path, output: Path, keypoints: Path | None, opened, position: int = 0,
             quiet: bool = False, live=None) -> tuple[int, str]:
    """The run once the inputs are checked and the outputs locked: (exit code, the summary of
    a quiet run). ``live``: the run's :class:`engine.streaming.LiveOutputs` or None (closed by
    the caller)."""
    import signal
    import time

    import numpy as np

    from .detection.faces import DetectorError
    from .frames import FrameLoop, FrameReader, RecordingFailed
    from .model import ModelError
    from .pipeline import PosePipeline
    from .recording import PoseRecorder, RecordingError

    fps, size, count = opened.fps, opened.size, opened.count

    def failure_line(e: Exception) -> str:
        """The one line a failed run reports: the recorder's own error for a recording failure."""
        e = e.__cause__ if isinstance(e, RecordingFailed) and e.__cause__ is not None else e
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        pipeline = PosePipeline(config)
    except (ModelError, DetectorError, ValueError) as e:
        opened.release()
        return _error(str(e).splitlines()[0] if str(e) else type(e).__name__), ""
    try:
        # Frames are timed by their source timestamps, in the file's own time base.
        recorder = PoseRecorder(output, keypoints, fps, size, pipeline.skeleton, lock=False, timestamps=True,
                                time_base=getattr(opened.capture, "time_base", None),
                                source=input_path.name)
    except (RecordingError, OSError) as e:
        pipeline.close()
        opened.release()
        return _error(str(e)), ""

    total = min(count, args.max_frames) if count and args.max_frames else (count or args.max_frames or None)
    if not quiet:
        print(f"backend: {pipeline.backend_description}", flush=True)
        stored = getattr(opened.capture, "stored_size", size)
        resampled = (f" (stored {stored[0]}x{stored[1]} with {opened.capture.sample_aspect} pixels, resampled to "
                     f"square pixels)" if stored != size else "")
        print(f"{input_path}: {size[0]}x{size[1]}{resampled}, {fps:g} fps, {count or '?'} frames -> {output}"
              + (f" + {keypoints}" if keypoints else ""), flush=True)

    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", dynamic_ncols=True, disable=not sys.stderr.isatty(), file=sys.stderr,
               position=position, leave=position == 0, desc=input_path.name if position else None)
    pipeline_s: list[float] = []
    detect_s: list[float] = []
    # Ctrl-C / SIGTERM stop the run at the next frame boundary, so that the video and the
    # keypoints file hold the same frames; a second one interrupts at once.
    stop: list[str] = []

    def on_signal(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        bar.write("stopping after this frame (press Ctrl-C again to stop at once)", file=sys.stderr)

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: default handling
            pass

    status, code, failure = "done", 0, None
    t_start = time.perf_counter()
    # Decoding runs on its own thread (FrameReader) and encoding on the writer's, so this
    # thread does inference and drawing only.
    if live is not None:
        live.set_source(video=output.name, source=input_path.name, fps=round(float(fps), 3))
    # A file is not live: frames are written a few frames late, so that a person is drawn from
    # his first frame, not from the one that confirmed him.
    loop = FrameLoop(pipeline, recorder, draw_boxes=args.draw_boxes, live=live, min_confidence=args.min_confidence,
                     lookahead=pipeline.lookahead_frames)
    reader = FrameReader(opened, args.max_frames)
    try:
        for index, frame, timestamp in reader:
            result = loop.step(frame, timestamp, index)
            pipeline_s.append(result.total_seconds)
            detect_s.append(result.detect_seconds)
            bar.update(1)
            if stop:
                status, code = "interrupted", 130
                break
        if reader.error and status == "done":
            status, code, failure = "failed", 1, f"decoding {input_path}: {reader.error.splitlines()[0]}"
    except KeyboardInterrupt:
        status, code = "interrupted", 130
    except Exception as e:  # any failure mid-way: keep what was done
        status, code, failure = "failed", 1, failure_line(e)
    finally:
        bar.close()
        try:
            try:   # the frames held back were processed: write them, whatever stopped the run
                loop.flush()
            except Exception as e:
                if failure is None:
                    status, code, failure = "failed", 1, failure_line(e)
            finally:   # a second Ctrl-C during the flush still finishes the files
                recorder.close()
        except RecordingError as e:  # e.g. the encoder failed while finishing the file
            status, code = "failed", 1
            failure = failure or f"finishing {output}: {str(e).splitlines()[0]}"
        finally:
            pipeline.close()
            reader.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
    wall = time.perf_counter() - t_start

    people = loop.people   # persons drawn in each frame written
    n = len(people)
    if reader.note:
        print(f"note: {input_path}: {reader.note}; {n} frames written", file=sys.stderr)
    if status == "done" and count and not args.max_frames and n + reader.unreadable < count:
        print(f"note: {input_path} ended after {n + reader.unreadable} of the {count} frames its header announces",
              file=sys.stderr)
    if failure:
        print(f"error: failed at frame {n}: {failure}", file=sys.stderr)
    if status != "done":
        print(f"{status} after {n} frames; {output} and {keypoints or 'no keypoints file'} hold every frame done",
              file=sys.stderr)
    if live is not None and live.server is not None and not quiet:
        srv = live.server
        print(f"stream: {srv.connections} client(s) connected during the run, {srv.skipped} message(s) skipped "
              f"for slow clients, {srv.dropped} client(s) dropped", flush=True)
    if n:
        ppl = np.asarray(people)
        ms = 1000 * float(np.mean(pipeline_s))
        summary = (f"{status}: {n} frames in {wall:.1f} s ({n / wall:.1f} fps overall); people per frame "
                   f"{ppl.mean():.2f} (max {ppl.max()}, {int((ppl == 0).sum())} frames with nobody); "
                   f"{ms:.1f} ms per frame in the pipeline (detection {1000 * float(np.mean(detect_s)):.1f} ms); "
                   f"backend {pipeline.backend_name}")
        if quiet:
            return code, f"{summary.split(';')[0]}" + (f"; {reader.note}" if reader.note else "") + f" -> {output}"
        print(summary, flush=True)
    return code, ""
