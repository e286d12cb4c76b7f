"""Live keypoints (engine/streaming.py, engine/osc.py, ``video --serve`` / ``--osc``) with real
clients: a ``websockets`` client and a python-osc server receive the frames of a short cut of
walking.mp4. Every server binds 127.0.0.1 with port 0 (a free port the system picks); every wait
is on a message or an event with a generous timeout, never on a duration."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

import main
from deeppose.engine.keypoints import read_keypoints, read_keypoints_header
from support import REPO, require_data
from support.clips import walking_frames, write_clip

websockets = pytest.importorskip("websockets")
pythonosc = pytest.importorskip("pythonosc")
from pythonosc.dispatcher import Dispatcher  # noqa: E402
from pythonosc.osc_server import ThreadingOSCUDPServer  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from deeppose.engine.osc import OscSender, frame_messages  # noqa: E402
from deeppose.engine.streaming import KeypointsServer, StreamError  # noqa: E402

WAIT = 60.0   # generous: the machine may be busy


def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def receive_all(ws) -> list[dict]:
    """Every message until the server closes the connection, decoded."""
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=WAIT)))
    except websockets.exceptions.ConnectionClosedOK:
        return out


class OscCollector:
    """A python-osc UDP server on 127.0.0.1 (free port) that keeps every message it receives."""

    def __init__(self):
        self.messages: list[tuple[str, tuple]] = []
        self.frame_ends: list[int] = []
        self.got_end = threading.Event()
        d = Dispatcher()
        d.set_default_handler(self._handle)
        self.server = ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, address, *args):
        self.messages.append((address, args))
        if address == "/deeppose/frame/end":
            self.frame_ends.append(args[0])
            self.got_end.set()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -- the WebSocket server on its own ----------------------------------------------------------
def record(i: int, pad: int = 0) -> dict:
    return {"frame": i, "timestamp": i / 30, "persons": [], **({"pad": "x" * pad} if pad else {})}


def test_header_first_then_every_frame_then_end_of_stream():
    with KeypointsServer("127.0.0.1", 0) as server:
        assert server.url.startswith("ws://127.0.0.1:") and server.address[1] > 0
        server.begin({"deeppose_keypoints": 1, "joints": ["a"]})
        with connect(server.url) as ws:
            assert json.loads(ws.recv(timeout=WAIT)) == {"deeppose_keypoints": 1, "joints": ["a"]}
            assert server.clients == 1
            for i in range(50):
                server.send(record(i))
            assert [json.loads(ws.recv(timeout=WAIT))["frame"] for _ in range(50)] == list(range(50))
            server.begin({"deeppose_keypoints": 1, "joints": ["b"]})     # a new stream: its header again
            server.send(record(0))
            assert json.loads(ws.recv(timeout=WAIT))["joints"] == ["b"]
            assert json.loads(ws.recv(timeout=WAIT))["frame"] == 0
            server.send(record(1))
            server.close()                          # flushes what is queued, then closes with 1000
            assert [m["frame"] for m in receive_all(ws)] == [1]
            assert ws.close_code == 1000 and ws.close_reason == "end of stream"
    assert server.connections == 1 and server.skipped == 0


def test_a_stalled_client_never_blocks_the_sender_and_is_dropped():
    """A client that stops reading: send() keeps returning, the client's queue stays at most
    max_pending (the oldest skipped), a reading client gets the newest frames, and the stalled
    one is dropped once its send has not finished for stall_timeout."""
    # 3 s without a finished send drops a client: far beyond a reading client's pauses on a loaded machine
    server = KeypointsServer("127.0.0.1", 0, max_pending=4, stall_timeout=3.0)
    n = 400
    try:
        server.begin({"deeppose_keypoints": 1})
        # no client keepalive pings: whether a loaded machine answers them in time is not the test
        # the stalled client's receive buffer fixed at 64 KiB: Linux grows a loopback one up to
        # tcp_rmem's maximum (32 MiB here), which could swallow every frame sent and never stall
        small = socket.socket()
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        small.connect(server.address[:2])
        with connect(server.url, sock=small, max_queue=1, close_timeout=1, ping_interval=None) as stalled, \
                connect(server.url, ping_interval=None) as reader:
            # the stalled client reads one message, then nothing more
            assert "deeppose_keypoints" in json.loads(stalled.recv(timeout=WAIT))
            assert "deeppose_keypoints" in json.loads(reader.recv(timeout=WAIT))
            frames = []
            stop = threading.Event()

            def read_all():   # the reading client reads all the while, as a live client does
                while not stop.is_set():
                    try:
                        frames.append(json.loads(reader.recv(timeout=0.2))["frame"])
                    except TimeoutError:
                        pass

            reading = threading.Thread(target=read_all, daemon=True)
            reading.start()
            try:
                for i in range(n):                      # 400 x 64 KiB: far beyond the socket buffers
                    server.send(record(i, pad=64 * 1024))
                    with server._lock:
                        assert all(len(c.pending) <= 4 for c in server._clients)
                wait_until(lambda: frames and frames[-1] == n - 1, "the reading client to get the last frame")
                assert server.skipped > 0
                # the stream goes on, as a live one does, until the stalled client is dropped
                i = n
                deadline = time.monotonic() + WAIT
                while not server.dropped and time.monotonic() < deadline:
                    server.send(record(i, pad=1024))
                    i += 1
                    time.sleep(0.01)
                assert server.dropped == 1, "the stalled client was never dropped"
                wait_until(lambda: server.clients == 1, "the stalled client to be gone")
                wait_until(lambda: frames[-1] == i - 1, "the reading client to get the newest frame")
            finally:
                stop.set()
                reading.join(timeout=WAIT)
            assert frames == sorted(set(frames))        # in order, none twice
    finally:
        server.close()


def test_port_in_use_bad_host_and_foreign_browser_pages_are_refused():
    with KeypointsServer("127.0.0.1", 0) as server:
        port = server.address[1]
        with pytest.raises(StreamError, match=f"port {port} is in use"):
            KeypointsServer("127.0.0.1", port)
        with pytest.raises(StreamError, match="unknown host"):
            KeypointsServer("no-such-host.invalid", 0)
        with pytest.raises(websockets.exceptions.InvalidStatus):   # any website the user has open
            connect(server.url, origin="https://example.com")
        with connect(server.url, origin=f"http://localhost:{port + 1}") as ws:   # a page of this machine
            # the handshake completes on the client before the server has added the client
            wait_until(lambda: server.clients == 1, "the server to add the client")
            server.send(record(0))                  # before the header: not sent
            server.begin({"deeppose_keypoints": 1})
            server.send(record(1))
            assert "deeppose_keypoints" in json.loads(ws.recv(timeout=WAIT))
            assert json.loads(ws.recv(timeout=WAIT))["frame"] == 1


# -- OSC on its own ---------------------------------------------------------------------------
def test_osc_messages_of_a_record():
    rec = {"frame": 7, "timestamp": 0.25, "persons": [{
        "id": 2, "b0": [320.0, 200.0, 100.0, 300.0], "score": 0.9,
        "joints": {"l_wrist": {"x": 99.5, "y": 59.5, "in_frame": True, "confidence": None},
                   "nose": {"x": None, "y": None, "in_frame": False, "confidence": 0.75}},
        "angles": {"l_elbow": {"deg": 91.5, "confidence": None}, "r_elbow": {"deg": None, "confidence": None}}}]}
    msgs = dict(frame_messages(rec, 640, 480))
    values = {a: [v for v, _ in args] for a, args in msgs.items()}
    assert list(msgs)[0] == "/deeppose/frame" and list(msgs)[-1] == "/deeppose/frame/end"
    assert values["/deeppose/frame"] == [7, 0.25, 1, 640, 480]
    assert values["/deeppose/persons"] == [2]
    assert values["/deeppose/person/2/box"] == [320.0, 200.0, 100.0, 300.0, 0.9]
    assert values["/deeppose/person/2/l_wrist"] == [99.5, 59.5, -1.0, 1]
    assert values["/deeppose/person/2/l_wrist/norm"] == [100 / 640, 60 / 480, -1.0, 1]
    x, y, c, inside = values["/deeppose/person/2/nose"]
    assert np.isnan(x) and np.isnan(y) and (c, inside) == (0.75, 0)
    assert values["/deeppose/person/2/angle/l_elbow"] == [91.5, -1.0]
    assert values["/deeppose/person/2/angle/r_elbow"] == [-1.0, -1.0]
    assert [t for _, t in msgs["/deeppose/person/2/l_wrist"]] == ["f", "f", "f", "i"]
    assert values["/deeppose/persons"] == [2] and dict(frame_messages({**rec, "persons": []}, 0, 0))["/deeppose/persons"] == []


def test_osc_sender_reaches_a_python_osc_server():
    collector = OscCollector()
    try:
        sender = OscSender("127.0.0.1", collector.port)
        sender.begin({"width": 640, "height": 480})
        sender.send({"frame": 3, "timestamp": 0.1, "persons": []})
        assert collector.got_end.wait(WAIT)
        sender.close()
        assert collector.frame_ends == [3]
        assert collector.messages[0] == ("/deeppose/frame", (3, pytest.approx(0.1), 0, 640, 480))
    finally:
        collector.close()
    with pytest.raises(StreamError, match="unknown host"):
        OscSender("no-such-host.invalid", 9000)


# -- the video command ------------------------------------------------------------------------
def test_video_serve_and_osc_stream_a_real_clip(flic_weights, tmp_path):
    """``main.py video CLIP --serve 127.0.0.1:0 --osc ...``: the address is printed before the
    model loads; a client that connects then gets the header and every frame from then on to
    the last, equal to the keypoints file's records, and the end of the stream; the OSC server
    gets the frames too."""
    clip = write_clip(tmp_path / "walk.mp4", [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
                                             for f in walking_frames(require_data("videos", "walking.mp4"), 20, (1280, 720))])
    kp = tmp_path / "walk.jsonl"
    collector = OscCollector()
    proc = subprocess.Popen([sys.executable, "main.py", "video", str(clip), "-o", str(tmp_path / "walk.pose.mp4"),
                             "--keypoints", str(kp), "--weights", str(flic_weights), "--serve", "127.0.0.1:0",
                             "--osc", f"127.0.0.1:{collector.port}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = re.match(r"streaming keypoints on (ws://127\.0\.0\.1:\d+) ", first)
        assert url, first
        with connect(url.group(1)) as ws:
            messages = receive_all(ws)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()
    assert proc.returncode == 0, err
    assert "stream: 1 client(s) connected during the run, 0 message(s) skipped" in out
    header, frames = messages[0], messages[1:]
    file_header = read_keypoints_header(kp)
    assert header == {k: v for k, v in file_header.items() if k not in ("frames_note", "size_note")}
    assert header["angles"] == ["l_elbow", "r_elbow", "l_shoulder", "r_shoulder"] and header["width"] == 640
    records = read_keypoints(kp)
    assert len(records) == 20 and frames, "the client connected during the run"
    # from the frame the client connected at to the last one, every frame, as in the file
    assert frames == records[frames[0]["frame"]:]
    persons = [p for r in frames for p in r["persons"]]
    assert persons and all(j["confidence"] is None for p in persons for j in p["joints"].values())   # psi v1
    # OSC: UDP, so frames may be lost in principle; those that arrive match the file
    assert collector.frame_ends and set(collector.frame_ends) <= set(range(20))
    by_frame = {r["frame"]: r for r in records}
    current = None
    checked = 0
    for address, args in collector.messages:
        if address == "/deeppose/frame":
            current = by_frame[args[0]]
            assert args[2:] == (len(current["persons"]), 640, 360)
        elif address.startswith("/deeppose/person/") and address.count("/") == 4 and "/angle" not in address:
            _, _, _, pid, joint = address.split("/")
            if joint == "box":
                continue
            person = next(p for p in current["persons"] if p["id"] == int(pid))
            assert args[:2] == pytest.approx((person["joints"][joint]["x"], person["joints"][joint]["y"]), abs=0.01)
            assert args[2:] == (-1.0, int(person["joints"][joint]["in_frame"]))
            checked += 1
    assert checked or not persons


def test_video_serve_errors_are_one_line_exit_2_before_any_work(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    w.write(np.zeros((64, 96, 3), np.uint8))
    w.release()
    for bad in ("127.0.0.1:99999", "localhost:http", "::1:8765"):
        rc = main.main(["video", str(clip), "--serve", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: argument --serve: "), (bad, err)
    rc = main.main(["video", str(clip), "--osc", "127.0.0.1:0"])
    assert rc == 2 and "port must be in 1..65535" in capsys.readouterr().err
    with KeypointsServer("127.0.0.1", 0) as busy:
        port = busy.address[1]
        rc = main.main(["video", str(clip), "--serve", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: cannot serve on 127.0.0.1:{port}: port {port} is in use "
                               "(choose another, or port 0 for a free one)"]
    assert not (tmp_path / "c.pose.mp4").exists()
    other = tmp_path / "d.mp4"
    other.write_bytes(clip.read_bytes())
    rc = main.main(["video", str(clip), str(other), "--serve", "127.0.0.1:0"])
    assert rc == 2 and "--serve and --osc stream one input" in capsys.readouterr().err
