"""No user file is ever lost to an output (issue 23, items 1-3 and 9-11): an output, its lock
file or a temporary file is never an input or a user's file, and the report of a failure is one
line that names the file. Tiny generated clips and a short cut of ../shared/data/videos/walking.mp4.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from deeppose.engine.outputs import OutputLock, RecordingError
from support import REPO, WEIGHTS_FLIC


def tiny_clip(path: Path, frames: int, shade: int = 0) -> Path:
    """A small generated clip (96x64, 10 fps) with nobody in it: fast through the pipeline.
    Written as MP4 whatever the name (OpenCV picks its writer by the suffix)."""
    made = path.with_name(path.name + ".made.mp4")
    writer = cv2.VideoWriter(str(made), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), (shade + 30 * i) % 256, np.uint8))
    writer.release()
    assert made.stat().st_size > 0
    made.rename(path)
    return path


def name_limit(folder: Path) -> int:
    """The longest file name (bytes) in ``folder``."""
    return os.pathconf(folder, "PC_NAME_MAX")


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def model_dir(random_model_dir) -> Path:
    return WEIGHTS_FLIC if (WEIGHTS_FLIC / "manifest.json").is_file() else random_model_dir


def _stderr_lines(text: str) -> list[str]:
    """stderr lines that are not log records or progress bars."""
    return [line for line in text.strip().splitlines()
            if line.strip() and not line.startswith(("INFO ", "DEBUG ", "WARNING "))]


# -- item 1: the app records over its own source ----------------------------------------------
def _app_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
            "DEEPPOSE_SETTINGS": str(tmp_path / "cli.ini"), **extra}


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink", "keypoints"])
def test_app_refuses_to_record_over_its_source(tmp_path, random_model_dir, how):
    """`main.py --source in.mp4 --record in.mp4 --quit-after-frames 20` (or a link to it, or a
    recording whose keypoints file .jsonl would be the source) ends with one line and exit 2;
    the source is untouched."""
    src = tiny_clip(tmp_path / ("in.jsonl" if how == "keypoints" else "in.mp4"), 30)
    before = src.read_bytes()
    record = {"same": src, "hardlink": tmp_path / "hard.mp4", "symlink": tmp_path / "sym.mp4",
              "keypoints": tmp_path / "in.mp4"}[how]
    if how == "hardlink":
        os.link(src, record)
    elif how == "symlink":
        record.symlink_to(src)
    proc = subprocess.run([sys.executable, "main.py", "--source", str(src), "--record", str(record), "--weights",
                           str(random_model_dir), "--backend", "torch", "--quit-after-frames", "20"],
                          cwd=REPO, env=_app_env(tmp_path), capture_output=True, text=True, timeout=180)
    lines = _stderr_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "would overwrite the input" in lines[0], lines
    assert src.read_bytes() == before
    made = {src.name} | ({record.name} if how in ("hardlink", "symlink") else set())
    assert {p.name for p in tmp_path.iterdir()} - {"cli.ini"} == made   # no lock file, no keypoints file


def test_window_refuses_to_record_over_its_source(qtbot, tmp_path, random_model_dir, monkeypatch):
    """In the window, Record to the file that is playing (or a hard link of it) shows a message
    and records nothing; recording elsewhere still works."""
    from deeppose.app.capture import Source
    from deeppose.app.window import MainWindow

    monkeypatch.setenv("DEEPPOSE_SETTINGS", str(tmp_path / "settings.ini"))
    src = tiny_clip(tmp_path / "in.mp4", 300)   # 30 s at 10 fps: still playing while checked
    before = src.read_bytes()
    os.link(src, tmp_path / "hard.mp4")
    win = MainWindow(source=Source.parse(str(src)), overrides={"weights": str(random_model_dir), "backend": "torch"},
                     probe_cameras=False)
    qtbot.addWidget(win)
    win.show()
    try:
        qtbot.waitUntil(lambda: win.playing and win.model is not None, timeout=60000)
        for target in (src, tmp_path / "hard.mp4"):
            assert win.start_recording(target) is None
            assert not win.recording
            assert "cannot record" in win.errors[-1] and "would overwrite the input" in win.errors[-1]
            assert "would overwrite the input" in win.status_message
        other = tmp_path / "rec" / "out.mp4"
        assert win.start_recording(other) == other and win.recording
    finally:
        win.close()
    assert src.read_bytes() == before


# -- item 2: an input that is another input's output ------------------------------------------
def test_earlier_outputs_among_inputs_are_skipped(tmp_path, model_dir, capsys):
    """`video x/clip.mp4 x/clip.pose.mp4` (a second `video x/*.mp4`, unquoted): the earlier
    output is skipped with a one-line note, not read while clip.mp4's run rewrites it."""
    x = tmp_path / "x"
    x.mkdir()
    clip = tiny_clip(x / "clip.mp4", 6)
    earlier = tiny_clip(x / "clip.pose.mp4", 4, shade=90)
    rc = main.main(["video", str(clip), str(earlier), "--jobs", "2", "--weights", str(model_dir)])
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "skipped" in line]
    assert rc == 0, captured.out + captured.err
    assert len(notes) == 1 and "earlier outputs" in notes[0] and "clip.pose.mp4" in notes[0]
    assert not (x / "clip.pose.pose.mp4").exists()
    assert frame_count(x / "clip.pose.mp4") == 6     # clip.mp4's own result, whole
    assert sorted(p.name for p in x.iterdir()) == ["clip.mp4", "clip.pose.mp4"]   # no lock or temporary file


@pytest.mark.parametrize("case", ["out_dir", "symlink", "lock"])
def test_output_that_is_an_input_is_refused_before_any_work(tmp_path, model_dir, capsys, case):
    """Any output (video, keypoints, lock file) that is any input -- by path, hard link or
    symlink -- is refused in one line before any input is processed."""
    x, y = tmp_path / "x", tmp_path / "y"
    x.mkdir()
    y.mkdir()
    clip = tiny_clip(x / "clip.mp4", 4)
    if case == "out_dir":      # y/clip.pose.mp4 is the user's file, and clip.mp4's output in --out-dir y
        user = tiny_clip(y / "clip.pose.mp4", 3, shade=60)
        argv = ["video", str(clip), str(user), "--out-dir", str(y), "--keypoints", "jsonl"]
    elif case == "symlink":    # x/other.mp4 is a symlink to the user's x/clip.pose.mp4
        user = tiny_clip(x / "clip.pose.mp4", 3, shade=60)
        (x / "other.mp4").symlink_to(user)
        argv = ["video", str(clip), str(x / "other.mp4")]
    else:                      # the input is named as the output's lock file
        user = tiny_clip(x / ".out.mp4.lock", 3, shade=60)
        argv = ["video", str(user), "-o", str(x / "out.mp4")]
    before = {p.name: p.read_bytes() for p in (*x.iterdir(), *y.iterdir()) if not p.is_symlink()}
    rc = main.main([*argv, "--weights", str(model_dir)])
    captured = capsys.readouterr()
    err = _stderr_lines(captured.err)
    assert rc == 2, captured.out + captured.err
    assert len(err) == 1 and err[0].startswith("error: ") and "would overwrite the input" in err[0], err
    assert "inputs done" not in captured.out     # nothing ran
    after = {p.name: p.read_bytes() for p in (*x.iterdir(), *y.iterdir()) if not p.is_symlink()}
    assert after == before


def test_overwrite_problem_names_the_output_and_the_input(tmp_path):
    from deeppose.engine.outputs import overwrite_problem

    a = tiny_clip(tmp_path / "a.mp4", 2)
    os.link(a, tmp_path / "b.mp4")
    assert overwrite_problem([(tmp_path / "c.mp4", "output video"), (None, "keypoints file")], [a]) is None
    msg = overwrite_problem([(tmp_path / "c.mp4", "output video"), (tmp_path / "b.mp4", "keypoints file")], [a])
    assert msg == f"keypoints file {tmp_path / 'b.mp4'} would overwrite the input {a} (the same file)"


# -- item 3: temporary files are never a user's file ------------------------------------------
def test_input_named_like_the_remux_temporary_file_is_kept(tmp_path, model_dir, capsys):
    """`video rec.mp4.tmp -o rec.mp4`: the final remux used to write rec.mp4.tmp beside the
    output and move it over rec.mp4, deleting the input."""
    src = tiny_clip(tmp_path / "rec.mp4.tmp", 5)
    before = src.read_bytes()
    rc = main.main(["video", str(src), "-o", str(tmp_path / "rec.mp4"), "--weights", str(model_dir)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert src.read_bytes() == before
    assert frame_count(tmp_path / "rec.mp4") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4", "rec.mp4.tmp"]


def test_writing_a_manifest_keeps_a_users_tmp_file(tmp_path, random_model_dir):
    """The manifest was written through manifest.json.tmp, a name a user may have."""
    from deeppose.engine.model import read_manifest, write_manifest

    folder = tmp_path / "m"
    shutil.copytree(random_model_dir, folder)
    mine = folder / "manifest.json.tmp"
    mine.write_text("my notes")
    names = sorted(p.name for p in folder.iterdir())
    write_manifest(folder, read_manifest(folder).manifest)
    assert mine.read_text() == "my notes"
    assert sorted(p.name for p in folder.iterdir()) == names   # and no temporary file left


def test_replaced_atomically_uses_a_fresh_name_and_cleans_up(tmp_path):
    from deeppose.engine.outputs import TEMP_PREFIX, replaced_atomically

    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    for name in ("out.json.tmp", f"{TEMP_PREFIX}out.json"):
        (tmp_path / name).write_text("user's")
    with replaced_atomically(target, suffix=".json") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TEMP_PREFIX) and tmp.name.endswith(".json")
        assert tmp.exists() and tmp.stat().st_size == 0          # created, empty, by us
        tmp.write_text("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    with pytest.raises(ZeroDivisionError):
        with replaced_atomically(target) as tmp:
            tmp.write_text("half")
            1 / 0
    assert target.read_text() == "new" and not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", "out.json.tmp", f"{TEMP_PREFIX}out.json"])
    assert all((tmp_path / n).read_text() == "user's" for n in ("out.json.tmp", f"{TEMP_PREFIX}out.json"))


def test_failed_remux_leaves_no_temporary_file(tmp_path):
    from deeppose.engine.recording import remux_to_plain_mp4

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(Exception):
        remux_to_plain_mp4(bad)
    assert bad.read_bytes() == b"not a video" and [p.name for p in tmp_path.iterdir()] == ["bad.mp4"]


# -- item 9: export-onnx on a read-only model folder -------------------------------------------
def _read_only(monkeypatch, folder: Path) -> None:
    """Simulate a read-only model folder: creating or removing a file in it fails with EROFS.

    The tests run as root, which ignores permission bits (chmod -w changes nothing), and no
    read-only mount is at hand, so the file system calls that write there are patched: creating a
    file (os.open with O_CREAT, what tempfile and open() use), onnx.save_model, and unlinking.
    """
    import onnx

    real_open, real_unlink, real_save = os.open, Path.unlink, onnx.save_model

    def inside(path) -> bool:
        return Path(os.path.abspath(path)).parent == folder

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def fake_open(path, flags, *a, **k):
        if flags & os.O_CREAT and inside(path):
            refuse(path)
        return real_open(path, flags, *a, **k)

    def fake_unlink(self, *a, **k):
        if inside(self):
            refuse(self)
        return real_unlink(self, *a, **k)

    def fake_save(model, f, *a, **k):
        if inside(f):
            refuse(f)
        return real_save(model, f, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(Path, "unlink", fake_unlink)
    monkeypatch.setattr(onnx, "save_model", fake_save)


def test_export_onnx_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """`make onnx` on a read-only model folder: one line naming the folder, exit 1 (it was two
    chained tracebacks: onnx.save_model's EROFS, then the temporary file's unlink's)."""
    from deeppose.tools.export.random_model import make_random_model as make

    folder = make(tmp_path / "ro", stages=1, seed=3, onnx=False).resolve()
    before = sorted(p.name for p in folder.iterdir())
    _read_only(monkeypatch, folder)
    rc = main.main(["export-onnx", "--weights", str(folder), "--exporter", "torchscript", "--no-check"])
    err = _stderr_lines(capsys.readouterr().err)
    assert rc == 1
    assert len(err) == 1 and err[0] == f"export-onnx: cannot write the ONNX files into {folder}: " \
                                       f"{os.strerror(errno.EROFS)}", err
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == before


# -- item 10: a file name the console cannot encode ---------------------------------------------
def test_non_ascii_path_with_an_ascii_console(tmp_path, model_dir):
    """PYTHONIOENCODING=ascii (or a cp1252 console): printing a non-ASCII input name escapes
    it instead of ending the run with a UnicodeEncodeError traceback."""
    src = tiny_clip(tmp_path / "gehen-\u00fc-\u6b69.mp4", 3)
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "main.py", "video", str(src), "--weights", str(model_dir)],
                          cwd=REPO, env=env, capture_output=True, timeout=300)
    out, err = proc.stdout.decode("ascii"), proc.stderr.decode("ascii")   # nothing but ASCII came out
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert "gehen-\\xfc-\\u6b69.mp4" in out                       # the input line, escaped
    assert frame_count(tmp_path / "gehen-\u00fc-\u6b69.pose.mp4") == 3
    missing = subprocess.run([sys.executable, "main.py", "video", str(tmp_path / "n\u00f6pe.mp4")],
                             cwd=REPO, env=env, capture_output=True, timeout=120)
    lines = _stderr_lines(missing.stderr.decode("ascii"))
    assert missing.returncode == 2 and len(lines) == 1 and "n\\xf6pe.mp4" in lines[0], lines


# -- item 11: automation runs and the user's settings; long output names ----------------------
def test_headless_automation_run_keeps_the_users_saved_window(tmp_path, random_model_dir):
    """An offscreen `--quit-after-frames` run with the user's real settings store (no
    DEEPPOSE_SETTINGS; QSettings under XDG_CONFIG_HOME) leaves the saved window as it was."""
    config = tmp_path / "config"
    conf = config / "deeppose" / "deeppose.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[General]\nbackend=torch\nsmooth=true\n")
    before = conf.read_bytes()
    src = tiny_clip(tmp_path / "in.mp4", 10)
    env = _app_env(tmp_path, XDG_CONFIG_HOME=str(config), HOME=str(tmp_path))
    del env["DEEPPOSE_SETTINGS"]
    proc = subprocess.run([sys.executable, "main.py", "--source", str(src), "--weights", str(random_model_dir),
                           "--quit-after-frames", "3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "automation:" in proc.stderr          # it did run (and close the window) with this store
    assert conf.read_bytes() == before
    assert [p.name for p in conf.parent.iterdir()] == ["deeppose.conf"]


def test_output_name_that_fits_is_written_whatever_its_lock_name(tmp_path, model_dir, capsys):
    """An output name a few bytes under the limit used to fail as "cannot write output video
    ...: File name too long": that was the probe's and the lock file's name, not the output's."""
    limit = name_limit(tmp_path)
    out = tmp_path / ("v" * (limit - len(".mp4")) + ".mp4")
    src = tiny_clip(tmp_path / "in.mp4", 3)
    rc = main.main(["video", str(src), "-o", str(out), "--weights", str(model_dir)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert frame_count(out) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "in.mp4"])   # the lock is gone
    from deeppose.engine.outputs import lock_path

    lock = lock_path(out)
    assert lock.parent == tmp_path and len(os.fsencode(lock.name)) <= limit and lock.name.endswith(".lock")
    assert lock_path(tmp_path / "short.mp4") == tmp_path / ".short.mp4.lock"


def test_too_long_output_name_and_failed_lock_name_the_file(tmp_path, model_dir, capsys, monkeypatch):
    """An output name over the limit is reported as the output's; a lock file that cannot be
    created is reported as the lock file's."""
    src = tiny_clip(tmp_path / "in.mp4", 2)
    out = tmp_path / ("w" * name_limit(tmp_path) + ".mp4")
    rc = main.main(["video", str(src), "-o", str(out), "--weights", str(model_dir)])
    err = _stderr_lines(capsys.readouterr().err)
    assert rc == 2 and len(err) == 1 and f"cannot write output video {out}: file name too long" in err[0], err

    import filelock

    def fail(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", fail)
    with pytest.raises(RecordingError) as e:
        OutputLock([tmp_path / "o.mp4"])
    assert str(e.value) == (f"cannot write {tmp_path / 'o.mp4'}: cannot create its lock file "
                            f"{tmp_path / '.o.mp4.lock'}: {os.strerror(errno.ENOSPC)}")
