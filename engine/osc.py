"""OSC output of the keypoints (``--osc HOST:PORT``): UDP messages for TouchDesigner, Max/MSP,
Pure Data, VCV Rack and the like, built and sent with the ``python-osc`` library.

Address space (all numbers float32 ``f`` or int32 ``i``; docs/KEYPOINTS.md has the table):

- ``/deeppose/frame`` i frame, f timestamp (s), i persons, i width, i height: first, per frame.
- ``/deeppose/persons`` i id, i id, ...: the ids of the persons in this frame (no argument
  when nobody is there); a receiver forgets the persons not listed.
- per person ``<id>`` (the track id, stable while the person is tracked):

  - ``/deeppose/person/<id>/box`` f cx, f cy, f w, f h, f score: b0, pixels.
  - ``/deeppose/person/<id>/<joint>`` f x, f y, f confidence, i in_frame: pixels (x right,
    y down, (0, 0) the centre of the top-left pixel); ``<joint>`` is the model's joint name
    (``l_wrist``, ...).
  - ``/deeppose/person/<id>/<joint>/norm`` f u, f v, f confidence, i in_frame: the same joint
    normalised to the frame, u = (x + 0.5) / width, v = (y + 0.5) / height (0..1 from the
    top-left corner of the image to the bottom-right one).
  - ``/deeppose/person/<id>/angle/<name>`` f degrees, f confidence: the joint angles
    (:mod:`engine.angles`; ``l_elbow``, ...).
- ``/deeppose/frame/end`` i frame: last, per frame (apply the frame's values now).

Placeholders: a confidence the model does not give (psi v1 models, the shipped ones) is -1;
an angle that is unknown (a joint out of the frame) is -1 degrees; a joint that is not finite
has x = y = u = v = NaN and in_frame 0.

Sending never blocks the pipeline: frames wait in a queue of ``queue_size`` on the sender's own
thread, the oldest skipped (and counted) when it falls behind; UDP itself drops what nobody
receives.
"""
from __future__ import annotations

import logging
import math
import queue
import socket
import threading

from .outputs import StreamError

log = logging.getLogger(__name__)

PREFIX = "/deeppose"
UNKNOWN = -1.0
"""The placeholder for a confidence or an angle that is unknown."""


def _num(v, unknown: float = UNKNOWN) -> float:
    return unknown if v is None or not math.isfinite(float(v)) else float(v)


def frame_messages(record: dict, width: int, height: int) -> list[tuple[str, list[tuple[object, str]]]]:
    """The OSC messages of one keypoints frame record (:func:`engine.keypoints.frame_record`),
    in sending order, as ``(address, [(value, OSC type tag), ...])`` (see the module docstring).

    Args:
        record: the frame record.
        width, height: the frame size in pixels (for the normalised coordinates; 0: unknown,
            u and v are then NaN).
    """
    persons = record.get("persons", [])
    out = [(f"{PREFIX}/frame", [(int(record["frame"]), "i"), (float(record["timestamp"]), "f"), (len(persons), "i"),
                                (int(width), "i"), (int(height), "i")]),
           (f"{PREFIX}/persons", [(int(p["id"]), "i") for p in persons])]
    nan = float("nan")
    for p in persons:
        base = f"{PREFIX}/person/{int(p['id'])}"
        b0 = [nan if v is None else float(v) for v in (p.get("b0") or [None] * 4)]
        out.append((f"{base}/box", [(v, "f") for v in b0] + [(_num(p.get("score")), "f")]))
        for name, j in p["joints"].items():
            x, y = (nan if j.get(c) is None else float(j[c]) for c in ("x", "y"))
            conf = _num(j.get("confidence"))
            inside = int(bool(j.get("in_frame", math.isfinite(x) and math.isfinite(y))))
            out.append((f"{base}/{name}", [(x, "f"), (y, "f"), (conf, "f"), (inside, "i")]))
            u = (x + 0.5) / width if width else nan
            v = (y + 0.5) / height if height else nan
            out.append((f"{base}/{name}/norm", [(u, "f"), (v, "f"), (conf, "f"), (inside, "i")]))
        for name, a in (p.get("angles") or {}).items():
            out.append((f"{base}/angle/{name}", [(_num(a.get("deg")), "f"), (_num(a.get("confidence")), "f")]))
    out.append((f"{PREFIX}/frame/end", [(int(record["frame"]), "i")]))
    return out


def resolve_udp(host: str, port: int) -> tuple:
    """(family, socket address) of ``host``:``port`` for UDP, resolved once (a host name is
    not looked up again for every packet).

    Raises:
        StreamError: the host does not resolve (one line).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise StreamError(f"cannot send OSC to {host}:{port}: unknown host ({e.strerror or e})") from None
    family, _, _, _, addr = infos[0]
    return family, addr


_STOP = object()


class OscSender:
    """Sends the frame records of a run as OSC messages over UDP (see the module docstring).

    Thread-safe; :meth:`begin` and :meth:`send` never block: the messages are built and sent
    on the sender's own thread.

    Args:
        host, port: the receiver (e.g. TouchDesigner's OSC In on port 7000).
        queue_size: frames that may wait; beyond that the oldest is skipped.
    Raises:
        StreamError: the host does not resolve, or no UDP socket can be opened.
    """

    def __init__(self, host: str, port: int, queue_size: int = 4):
        from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: F401 (fail here if missing)

        self.address = (host, int(port))
        family, self._target = resolve_udp(host, port)
        try:
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            raise StreamError(f"cannot send OSC to {host}:{port}: {e.strerror or e}") from None
        self._sock.setblocking(False)
        self._size = (0, 0)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self.frames_sent = 0
        self.skipped = 0
        self.errors = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="osc-sender", daemon=True)
        self._thread.start()

    @property
    def wants_frames(self) -> bool:
        """Always (UDP: nobody tells whether a receiver listens) until closed."""
        return not self._closed

    def begin(self, header: dict) -> None:
        """A new stream: its frame size (``width``, ``height``) normalises the coordinates."""
        self._put(("size", (int(header.get("width") or 0), int(header.get("height") or 0))))

    def send(self, record: dict) -> None:
        """Queue one frame record to be sent (the oldest waiting one is skipped when full)."""
        if not self._closed:
            self._put(("frame", record))

    def _put(self, item) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._queue.get_nowait()
                except queue.Empty:
                    continue
                if old[0] == "size":   # keep the stream's size; skip a frame instead
                    self._size = old[1]
                else:
                    self.skipped += 1

    def _run(self) -> None:
        from pythonosc.osc_message_builder import OscMessageBuilder

        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            kind, value = item
            if kind == "size":
                self._size = value
                continue
            try:
                for address, args in frame_messages(value, *self._size):
                    builder = OscMessageBuilder(address)
                    for v, tag in args:
                        builder.add_arg(v, tag)
                    self._sendto(builder.build().dgram)
                self.frames_sent += 1
            except Exception:
                self.errors += 1
                if self.errors == 1:
                    log.exception("OSC: building or sending a frame failed")

    def _sendto(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, self._target)
        except (BlockingIOError, ConnectionRefusedError):
            pass   # the socket buffer is full, or nobody listens (an ICMP answer): UDP may drop
        except OSError as e:
            self.errors += 1
            if self.errors == 1:
                log.warning("OSC: sending to %s:%d failed: %s", *self.address, e.strerror or e)

    def close(self) -> None:
        """Send what is queued, then stop the thread and close the socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=5)
        except queue.Full:   # the thread is gone: nothing drains the queue
            pass
        self._thread.join(10)
        self._sock.close()
