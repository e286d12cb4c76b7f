"""The run-time path needs neither torch nor onnx nor onnxscript: importing the runtime does not
import them, and the video command and the app run on ONNX Runtime with the shipped model on a
real clip in a process where they cannot be imported (``sys.modules[name] = None``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from support import REPO, WALKING, cut_video, require_data

BUILD_TIME = ("torch", "onnx", "onnxscript")
BLOCK = "import sys\nfor _m in {mods!r}:\n    sys.modules[_m] = None\n".format(mods=BUILD_TIME)


def _python(code: str, *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_importing_the_runtime_imports_no_build_time_package():
    code = ("import sys\nimport deeppose.engine.backends, deeppose.engine.pipeline, deeppose.engine.video_cli\n"
            "import deeppose.engine.model, deeppose.engine.cascade, deeppose.engine.api\n"
            f"print(sorted(m for m in {BUILD_TIME!r} if m in sys.modules))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_video_command_on_onnxruntime_with_torch_blocked(flic_weights, tmp_path):
    require_data("videos", "walking.mp4")
    clip = cut_video(WALKING, tmp_path / "walking10.mp4", 10)
    out, kp = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    code = BLOCK + ("import runpy\nsys.argv = ['main.py'] + sys.argv[1:]\n"
                    "try:\n    runpy.run_path('main.py', run_name='__main__')\n"
                    "finally:\n    print('loaded:', sorted(m for m in %r if sys.modules.get(m) is not None))\n"
                    % (BUILD_TIME,))
    proc = _python(code, "video", str(clip), "-o", str(out), "--keypoints", str(kp), "--weights", str(flic_weights),
                   "--backend", "auto")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend: onnxruntime" in proc.stdout            # auto found ONNX Runtime without torch
    assert "loaded: []" in proc.stdout
    records = [json.loads(line) for line in kp.read_text().splitlines()]
    assert records[0].get("deeppose_keypoints") == 1      # the header record, then one record per frame
    records = records[1:]
    assert len(records) == 10
    joints = [np.array([[j["x"], j["y"]] for j in p["joints"].values()], float) for r in records for p in r["persons"]]
    assert len(joints) >= 8, "the walking person should be found in most of the 10 frames"
    assert all(j.shape == (11, 2) and np.isfinite(j).all() for j in joints)
    assert out.stat().st_size > 0


def test_app_on_onnxruntime_with_torch_blocked(flic_weights, tmp_path):
    """The desktop app (offscreen) shows frames of a real clip on ONNX Runtime without torch."""
    require_data("videos", "walking.mp4")
    pytest.importorskip("PyQt6")
    clip = cut_video(WALKING, tmp_path / "walking12.mp4", 12)
    code = BLOCK + ("import runpy\nsys.argv = ['main.py'] + sys.argv[1:]\n"
                    "runpy.run_path('main.py', run_name='__main__')\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DEEPPOSE_SETTINGS": str(tmp_path / "app.ini")}
    proc = subprocess.run([sys.executable, "-c", code, "--source", str(clip), "--weights", str(flic_weights),
                           "--backend", "auto", "--quit-after-frames", "4"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = [line for line in proc.stderr.splitlines() if "automation:" in line]
    assert summary and "backend onnxruntime" in summary[0], proc.stderr[-2000:]
    assert int(summary[0].split("automation: ")[-1].split()[0]) >= 1   # the logger is named ...automation too
