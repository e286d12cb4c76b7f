"""The app's live keypoints stream (settings panel "Stream keypoints", ``--serve``) and its joint
angles HUD option, with a real ``websockets`` client. Offscreen Qt; each test has its own
settings file; servers bind 127.0.0.1 with port 0 or a port found free; waits are on messages
and events with generous timeouts."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import REPO, WALKING, require_data

pytest.importorskip("pytestqt")
websockets = pytest.importorskip("websockets")
from PyQt6.QtGui import QImage  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from deeppose.app.view import HudStats, VideoView, angle_labels  # noqa: E402
from deeppose.app.window import MainWindow  # noqa: E402
from deeppose.engine.angles import angle_defs  # noqa: E402
from deeppose.engine.pipeline import FrameResult, PersonResult  # noqa: E402
from deeppose.engine.skeletons import FLIC  # noqa: E402
from deeppose.engine.streaming import KeypointsServer  # noqa: E402

WAIT_MS = 120000


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("DEEPPOSE_SETTINGS", str(path))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first 24 frames of walking.mp4 at 640x360."""
    require_data("videos", "walking.mp4")
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    cap = cv2.VideoCapture(str(WALKING))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    for _ in range(24):
        ok, frame = cap.read()
        assert ok
        out.write(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
    out.release()
    cap.release()
    return path


def open_window(qtbot, weights, **kw) -> MainWindow:
    win = MainWindow(source=None, overrides={"weights": str(weights), "backend": "onnxruntime"}, probe_cameras=False,
                     **kw)
    qtbot.addWidget(win)
    win.resize(1100, 700)
    win.show()
    return win


def receive_until_closed(ws) -> list[dict]:
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=WAIT_MS / 1000)))
    except websockets.exceptions.ConnectionClosedOK:
        return out


def test_serve_setting_streams_every_processed_frame_and_shows_the_clients(qtbot, flic_weights, clip, settings_file):
    win = open_window(qtbot, flic_weights)
    assert win.serve_label.text() == "off" and not win.serve_check.isChecked()
    win.serve_edit.setText("127.0.0.1:0")
    win.serve_edit.editingFinished.emit()
    win.serve_check.setChecked(True)
    server = win.live.server
    assert server is not None and server.url.startswith("ws://127.0.0.1:")
    qtbot.waitUntil(lambda: win.model is not None, timeout=WAIT_MS)
    with connect(server.url) as ws:
        qtbot.waitUntil(lambda: win.serve_label.text() == f"{server.url}: 1 client", timeout=WAIT_MS)
        assert f"stream {server.url}: 1 client" in win.view.stats.lines()
        win.angles_check.setChecked(True)
        win.open_file(clip)
        qtbot.waitUntil(lambda: win.end_info is not None, timeout=WAIT_MS)
        processed = win.end_info["processed"]
        win.serve_check.setChecked(False)       # stop: the client gets what is queued, then the end
        messages = receive_until_closed(ws)
    assert ws.close_code == 1000
    assert win.live.server is None and win.serve_label.text() == "off" and not win.view.stats.stream
    header, frames = messages[0], messages[1:]
    assert header["deeppose_keypoints"] == 1 and header["skeleton"] == "flic" and header["source"] == "walk.mp4"
    assert (header["width"], header["height"]) == (640, 360)
    assert header["angles"] == [d.name for d in angle_defs(FLIC)]
    assert len(frames) == processed >= 1                       # every frame the app processed
    indices = [f["frame"] for f in frames]
    assert indices == sorted(set(indices)) and max(indices) < 24
    persons = [p for f in frames for p in f["persons"]]
    assert all(set(p["angles"]) == set(header["angles"]) for p in persons)
    # the angles HUD option: labels of the last result shown, at the vertex joints
    last = win.last_display
    assert win.view.show_angles and win.view.angle_labels == angle_labels(last.result, last.skeleton)
    # saved: the next window serves there again and shows the angles
    win.close()
    text = settings_file.read_text()
    assert "serve=false" in text and "serve_address=127.0.0.1:0" in text and "show_angles=true" in text


def test_a_saved_serve_setting_listens_again_and_bad_addresses_are_one_line(qtbot, flic_weights, settings_file):
    with KeypointsServer("127.0.0.1", 0) as busy:
        port = busy.address[1]
        settings_file.write_text(f"[General]\nserve=true\nserve_address=127.0.0.1:{port}\n")
        win = open_window(qtbot, flic_weights)
        # the port is taken: one line in the status bar, the box unticked, the setting kept
        assert win.live.server is None and not win.serve_check.isChecked()
        assert win.errors[-1] == (f"Keypoints not streamed: cannot serve on 127.0.0.1:{port}: port {port} is in use "
                                  "(choose another, or port 0 for a free one)")
        assert win.settings.serve
    win.serve_edit.setText("localhost:notaport")
    win.serve_edit.editingFinished.emit()
    assert win.errors[-1].startswith("Stream address not changed: expected HOST:PORT")
    assert win.serve_edit.text() == f"127.0.0.1:{port}"
    win.serve_check.setChecked(True)                   # the port is free now
    assert win.live.server is not None and win.live.server.address == ("127.0.0.1", port)
    win.close()
    assert win.live.server.clients == 0


def test_angle_labels_and_their_painting(qtbot):
    pose = np.array([[300, 100], [300, 160], [360, 160], [200, 100], [200, 160], [200, 220], [300, 250],
                     [200, 250], [260, 60], [240, 60], [250, 70]], dtype=np.float64)
    person = PersonResult(1, np.array([250.0, 160.0, 250.0, 300.0]), None, "face", pose[None], pose)
    result = FrameResult(0, 0.0, [person], 0.0, [0.0], 0.0, "onnxruntime", (400, 300), 1)
    labels = angle_labels(result, FLIC)
    assert labels == [(300.0, 160.0, "90\u00b0"), (200.0, 160.0, "180\u00b0"), (300.0, 100.0, "0\u00b0"),
                      (200.0, 100.0, "0\u00b0")]
    assert angle_labels(None, FLIC) == [] and angle_labels(result, None) == []
    # an unsure left elbow (not drawn under "Hide unsure joints") takes the angles it is in along
    conf = np.full(11, 0.9)
    conf[1] = 0.1
    unsure = FrameResult(0, 0.0, [dataclasses.replace(person, confidence=conf)], 0.0, [0.0], 0.0, "onnxruntime",
                         (400, 300), 1)
    assert angle_labels(unsure, FLIC, min_confidence=0.2) == [(200.0, 160.0, "180\u00b0"), (200.0, 100.0, "0\u00b0")]
    assert angle_labels(unsure, FLIC) == labels                 # nothing hidden
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    image = QImage(400, 300, QImage.Format.Format_RGB888)
    image.fill(0)
    view.set_frame(image, 0.0)
    view.show_hud = False

    def yellow_pixels() -> int:
        grab = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        h, w, bpl = grab.height(), grab.width(), grab.bytesPerLine()
        rgb = np.frombuffer(grab.constBits().asstring(h * bpl), np.uint8).reshape(h, bpl)[:, :3 * w].reshape(h, w, 3)
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] > 180) & (rgb[..., 2] < 160)).sum())

    view.angle_labels = labels
    assert yellow_pixels() == 0                      # the option is off
    view.show_angles = True
    assert yellow_pixels() > 20
    assert "stream ws://127.0.0.1:1: 2 clients" in HudStats(stream="ws://127.0.0.1:1: 2 clients").lines()


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1", "DEEPPOSE_SETTINGS": str(tmp_path / "c.ini")}


def test_app_command_line_serve(flic_weights, clip, tmp_path):
    """``main.py --serve``: the address printed before the window opens; a port in use or a
    bad HOST:PORT is one error line and exit code 2."""
    proc = subprocess.run([sys.executable, "main.py", "--source", str(clip), "--weights", str(flic_weights),
                           "--backend", "onnxruntime", "--quit-after-frames", "2", "--serve", "127.0.0.1:0"],
                          cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("streaming keypoints on ws://127.0.0.1:")
    with KeypointsServer("127.0.0.1", 0) as busy:
        port = busy.address[1]
        proc = subprocess.run([sys.executable, "main.py", "--source", str(clip), "--serve", f"127.0.0.1:{port}"],
                              cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: cannot serve on 127.0.0.1:{port}: port {port} is in use "
                                                "(choose another, or port 0 for a free one)"]
    proc = subprocess.run([sys.executable, "main.py", "--serve", "8765:localhost"], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: argument --serve: expected HOST:PORT with a port number")
