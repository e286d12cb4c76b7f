"""`pip install .` (not editable) into a fresh virtual environment gives a `deeppose` command that
runs the video command from another folder, with the shipped weights and face models found as
package data and no generic top-level package (app, engine, tools) in site-packages.

Fast and offline: the new environment sees this environment's site-packages as a path entry
(the dependencies are installed there) and installs only deeppose itself, with --no-deps,
--no-index and --no-build-isolation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from deeppose.cli import COMMANDS
from support import REPO, WALKING, cut_video, require_data


def _source_copy(dest: Path) -> Path:
    """The repository's tracked files plus the shipped models' ONNX files, which `make onnx`
    builds in the checkout before packaging (a build writes build/ and *.egg-info into its
    source, hence the copy)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        built = [p.relative_to(REPO).as_posix() for p in REPO.glob("weights/*/stage[0-9].onnx")]
        for rel in listed.stdout.split("\0") + built:
            if rel and (REPO / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, dest / rel)
    else:  # not a git checkout
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "out", "runs", "cache", "build", "*.egg-info", "__pycache__", "*.engine*"))
    return dest


@pytest.mark.slow
def test_installed_package_runs_the_video_command_from_another_folder(tmp_path):
    require_data("videos", "walking.mp4")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # This environment's dependencies (pip and setuptools included) as a path entry; its .pth
    # files (e.g. an editable install of the repository) are not processed from there.
    (site / "deeppose_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    src = _source_copy(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation",
                          "--ignore-installed", "--quiet", str(src)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr

    # Only the deeppose package went into site-packages, with the models as package data.
    installed = sorted(p.name for p in site.iterdir() if p.name not in ("deeppose_test_deps.pth", "__pycache__"))
    assert [n for n in installed if not n.startswith("deeppose")] == [], installed
    pkg = site / "deeppose"
    for rel in ("engine/backends/base.py", "engine/detection/faces.py", "engine/tracking/tracker.py", "app/cli.py",
                "tools/export/export_onnx.py", "weights/flic/manifest.json", "weights/flic/stage3.onnx",
                "weights/body/manifest.json", "weights/body/stage2.onnx",
                "weights/face/face_detection_full_range_sparse.tflite"):
        assert (pkg / rel).is_file(), rel
    assert not (pkg / "tools" / "dev").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clip = cut_video(WALKING, elsewhere / "walk.mp4", 10)
    which = subprocess.run([str(py), "-c", "import deeppose.engine as e, importlib.util as u; "
                            "print(e.__file__); print(u.find_spec('engine'), u.find_spec('tools'), u.find_spec('app'))"],
                           cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120)
    assert which.returncode == 0, which.stderr
    assert which.stdout.splitlines() == [str(pkg / "engine" / "__init__.py"), "None None None"]

    deeppose = venv / "bin" / "deeppose"
    helped = subprocess.run([str(deeppose), "--help"], cwd=elsewhere, capture_output=True, text=True, env=env,
                            timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert all(name in helped.stdout for name in COMMANDS)

    run = subprocess.run([str(deeppose), "video", "walk.mp4", "-o", "walk.pose.mp4", "--keypoints", "walk.jsonl"],
                         cwd=elsewhere, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "backend: onnxruntime" in run.stdout
    records = [json.loads(line) for line in (elsewhere / "walk.jsonl").read_text().splitlines()]
    assert records[0].get("deeppose_keypoints") == 1      # the header record, then one record per frame
    records = records[1:]
    assert len(records) == 10 and sum(len(r["persons"]) > 0 for r in records) >= 8
    assert (elsewhere / "walk.pose.mp4").stat().st_size > 0
    assert clip.is_file()
