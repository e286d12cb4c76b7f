"""Live keypoints for other programs: a WebSocket server (``--serve HOST:PORT``), OSC messages
(``--osc HOST:PORT``, :mod:`engine.osc`) and :class:`LiveOutputs`, which feeds both from the
frame loop (:class:`engine.frames.FrameLoop`) of the ``video`` command and of the app.

The WebSocket stream (:class:`KeypointsServer`, the ``websockets`` library) sends each
connected client text messages, one JSON object each, in the keypoints JSON Lines schema
(:mod:`engine.keypoints`): the header record first (on connect, and again whenever the stream
starts anew: another source, model or frame size in the app), then one frame record per
processed frame. docs/KEYPOINTS.md describes the protocol.

The pipeline never waits for a client: :meth:`KeypointsServer.send` only appends the message to
each client's queue of at most ``max_pending`` messages (the oldest is skipped, and counted,
when a client falls that far behind) and wakes the server's own thread, which sends. A client
whose send has not completed for ``stall_timeout`` seconds (it stopped reading) is dropped
(close code 1008). Memory stays bounded: at most ``max_clients`` clients, each with at most
``max_pending`` queued messages plus the socket's write buffer (``write_limit``) and a kernel
send buffer fixed at :data:`SEND_BUFFER` bytes (Linux books twice that) (Linux would grow it up to ``tcp_wmem``'s maximum,
megabytes that a stopped client could swallow for a long time before its send stalls).

Module-level imports stay light; ``websockets`` is imported when a server starts.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import deque

from .constants import DEFAULT_HOST
from .outputs import StreamError  # noqa: F401 (raised here, and imported from here by callers)

log = logging.getLogger(__name__)

SEND_BUFFER = 256 * 1024
"""SO_SNDBUF of every client connection, bytes (accepted sockets inherit it from the listening
one): room for about a hundred frame records, so a client that stops reading stalls its send,
and is dropped, after that many frames rather than after megabytes."""

LOCAL_ORIGINS = re.compile(r"^(https?|file)://(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$")
"""Browser pages may connect only from this machine (``Origin`` http(s)://localhost,
127.x.x.x or [::1], any port): any website open in a browser could otherwise read the poses of
the user's webcam. Programs that send no ``Origin`` (Python, TouchDesigner, Node) connect freely."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (localhost, 127.x.x.x, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one the system picks).

    Raises:
        StreamError: the host does not resolve, the address is not this machine's, or the
            port is in use or not allowed (one line naming HOST:PORT).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StreamError(f"cannot serve on {where}: unknown host ({e.strerror or e})") from None
    last: OSError | None = None
    for family, _, _, _, addr in infos:
        try:
            sock = socket.create_server(addr, family=family, backlog=16)
        except OSError as e:
            last = e
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return sock
    if last is not None and last.errno in (98, 48, 10048):   # EADDRINUSE (Linux, macOS, Windows)
        raise StreamError(f"cannot serve on {where}: port {port} is in use (choose another, or port 0 for a free one)")
    raise StreamError(f"cannot serve on {where}: {getattr(last, 'strerror', None) or last}")


class _Client:
    """One connected client: its queue (guarded by the server's lock) and send state."""

    def __init__(self, ws, max_pending: int):
        self.ws = ws
        self.pending: deque[str] = deque(maxlen=max_pending)
        self.header: str | None = None     # a header waiting to go first
        self.wake: asyncio.Event = asyncio.Event()
        self.wake_scheduled = False
        self.sending_since: float | None = None
        self.skipped = 0
        self.sent = 0
        self.task: asyncio.Task | None = None

    def busy(self) -> bool:
        return bool(self.pending) or self.header is not None or self.sending_since is not None


class KeypointsServer:
    """A WebSocket server that streams keypoints records to every connected client.

    Binds at construction (errors then, before any work), then serves on its own thread
    (an asyncio loop). Thread-safe: :meth:`begin`, :meth:`send` and :meth:`close` may be called
    from any thread; none of them waits for a client.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`address`). Default
            127.0.0.1: this machine only.
        max_pending: messages that may wait per client; beyond that the oldest is skipped.
        stall_timeout: seconds a send may stay unfinished before its client is dropped.
        max_clients: clients served at once; more are refused (HTTP 503).
        flush_timeout: :meth:`close` lets the clients receive what is queued for at most
            this long before it closes their connections (code 1000, "end of stream").
    Raises:
        StreamError: cannot listen there (see :func:`bind_socket`).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, max_pending: int = 64, stall_timeout: float = 10.0,
                 max_clients: int = 16, flush_timeout: float = 2.0):
        self.max_pending = max(1, int(max_pending))
        self.stall_timeout = float(stall_timeout)
        self.max_clients = int(max_clients)
        self.flush_timeout = float(flush_timeout)
        self._lock = threading.Lock()
        self._clients: list[_Client] = []
        self._header: str | None = None
        self.skipped = 0            # messages skipped, all clients together
        self.dropped = 0            # clients dropped for stalling
        self.connections = 0        # clients connected so far
        self.frames_sent = 0        # frame messages handed to clients (one per client and frame)
        self._closed = False
        self._sock = bind_socket(host, port)
        addr = self._sock.getsockname()
        self.address: tuple[str, int] = (host, int(addr[1]))
        """(host as given, port listened on)."""
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="keypoints-server", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None or not self._started.is_set():
            self._sock.close()
            raise StreamError(f"cannot serve on {self.url}: {self._error or 'the server did not start'}")

    # -- any thread ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` of the server (the port actually listened on)."""
        host, port = self.address
        return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"

    @property
    def clients(self) -> int:
        """Clients connected now."""
        with self._lock:
            return len(self._clients)

    def begin(self, header: dict | str) -> None:
        """Start a stream: ``header`` (the keypoints header record) goes to every client now,
        before any later frame, and to each client that connects later, first; frames still
        queued for the previous stream are dropped."""
        text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
        with self._lock:
            self._header = text
            for c in self._clients:
                c.pending.clear()
                c.header = text
            wake = self._wake_locked()
        self._wake(wake)

    def send(self, record: dict | str) -> None:
        """Queue one frame record for every client (nothing to do without clients, or before
        :meth:`begin`: the header always comes first). Never blocks on a client: a client
        ``max_pending`` messages behind skips its oldest one."""
        if self._closed or not self._clients or self._header is None:
            return
        text = record if isinstance(record, str) else json.dumps(record, separators=(",", ":"))
        with self._lock:
            for c in self._clients:
                if len(c.pending) == self.max_pending:
                    c.skipped += 1
                    self.skipped += 1
                c.pending.append(text)
                self.frames_sent += 1
            wake = self._wake_locked()
        self._wake(wake)

    @property
    def wants_frames(self) -> bool:
        """Whether a frame record would go anywhere now (a client is connected)."""
        return bool(self._clients) and not self._closed and self._header is not None

    def close(self) -> None:
        """Stop listening, let the clients receive what is queued (up to ``flush_timeout``
        seconds), close their connections (code 1000) and end the thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(self.flush_timeout + 15)
        self._sock.close()

    def __enter__(self) -> "KeypointsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wake_locked(self) -> list[_Client]:
        wake = [c for c in self._clients if not c.wake_scheduled]
        for c in wake:
            c.wake_scheduled = True
        return wake

    def _wake(self, clients: list[_Client]) -> None:
        for c in clients:
            try:
                self._loop.call_soon_threadsafe(c.wake.set)
            except RuntimeError:   # the loop is closed (the server is stopping)
                pass

    # -- the server's thread -----------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:   # reported by the constructor when starting failed
            self._error = self._error or e
            log.exception("keypoints server failed")
        finally:
            self._started.set()
            self._loop.close()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        ws_log = logging.getLogger("deeppose.streaming.websockets")
        ws_log.setLevel(logging.CRITICAL)   # a port scan's failed handshakes are no errors of ours
        try:
            server = await serve(self._handler, sock=self._sock, compression=None, max_size=4096,
                                 origins=[None, LOCAL_ORIGINS], close_timeout=2, ping_interval=20, ping_timeout=20,
                                 process_request=self._admit, logger=ws_log)
        except Exception as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        watchdog = asyncio.create_task(self._watchdog())
        await self._stop.wait()
        server.close(close_connections=False)   # no new clients
        deadline = time.monotonic() + self.flush_timeout
        while time.monotonic() < deadline and any(c.busy() for c in list(self._clients)):
            await asyncio.sleep(0.02)
        watchdog.cancel()
        for c in list(self._clients):
            await self._close_client(c, 1000, "end of stream")
        await server.wait_closed()

    def _admit(self, connection, request):
        """Refuse clients beyond ``max_clients`` (HTTP 503) before the handshake completes."""
        from http import HTTPStatus

        if self._closed:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "the stream has ended\n")
        if self.clients >= self.max_clients:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"at most {self.max_clients} clients\n")
        return None

    async def _handler(self, ws) -> None:
        client = _Client(ws, self.max_pending)
        with self._lock:
            self._clients.append(client)
            self.connections += 1
            client.header = self._header
            client.wake_scheduled = True
        client.wake.set()
        log.debug("keypoints client %s connected", ws.remote_address)
        client.task = asyncio.create_task(self._send_loop(client))
        closed = asyncio.create_task(ws.wait_closed())
        try:
            await asyncio.wait({client.task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (client.task, closed):
                t.cancel()
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            log.debug("keypoints client %s left (%d frames skipped)", ws.remote_address, client.skipped)

    async def _send_loop(self, client: _Client) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                with self._lock:
                    client.wake_scheduled = False
                while True:
                    with self._lock:
                        if client.header is not None:
                            text, client.header = client.header, None
                        elif client.pending:
                            text = client.pending.popleft()
                        else:
                            break
                        client.sending_since = time.monotonic()
                    await client.ws.send(text)
                    client.sending_since = None
                    client.sent += 1
        except ConnectionClosed:
            pass
        finally:
            client.sending_since = None

    async def _watchdog(self) -> None:
        """Drop clients whose send has not finished for ``stall_timeout`` seconds."""
        while True:
            await asyncio.sleep(min(1.0, self.stall_timeout / 4))
            now = time.monotonic()
            for c in list(self._clients):
                since = c.sending_since
                if since is not None and now - since > self.stall_timeout:
                    self.dropped += 1
                    log.warning("keypoints client %s dropped: it read nothing for %.0f s", c.ws.remote_address,
                                self.stall_timeout)
                    await self._close_client(c, 1008, "too slow: stopped reading")

    async def _close_client(self, client: _Client, code: int, reason: str) -> None:
        if client.task is not None:
            client.task.cancel()
        try:
            await asyncio.wait_for(client.ws.close(code, reason), 3)
        except Exception:   # a stuck connection: cut it
            transport = getattr(client.ws, "transport", None)
            if transport is not None:
                transport.abort()
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)


class LiveOutputs:
    """The live outputs of a run, fed one frame at a time from the frame loop: a
    :class:`KeypointsServer` and/or an :class:`engine.osc.OscSender`.

    :meth:`publish` builds the header record (:func:`engine.keypoints.header_record`: the
    model's joints and angles, the frame size and the fields of :meth:`set_source`) and starts
    a new stream on each output when it changes, then builds the frame record once
    (:func:`engine.keypoints.frame_record`) and hands it to every output that wants it. It never
    raises: an output's failure is logged (once per kind of failure) and the run goes on.

    Args:
        server: the WebSocket server, or None.
        osc: the OSC sender, or None.
    """

    def __init__(self, server: KeypointsServer | None = None, osc=None):
        self.server = server
        self.osc = osc
        self._fields: dict = {}
        self._key = None
        self._errors: set[str] = set()

    @property
    def outputs(self) -> list:
        return [o for o in (self.server, self.osc) if o is not None]

    def set_source(self, **fields) -> None:
        """Header fields of the stream from now on (e.g. ``video``, ``source``, ``fps``); a change
        starts a new stream on the next frame (the same fields again change nothing)."""
        if fields != self._fields:
            self._fields = dict(fields)
            self._key = None

    def restart(self) -> None:
        """Start a new stream on the next frame (the header again), e.g. a source played anew."""
        self._key = None

    def set_server(self, server: KeypointsServer | None) -> KeypointsServer | None:
        """Replace the WebSocket server (None: stop streaming); returns the previous one, which
        the caller closes. The next frame starts the stream on the new one with the header."""
        old, self.server = self.server, server
        self._key = None
        return old

    def publish(self, result, skeleton) -> None:
        """Send one :class:`engine.pipeline.FrameResult` (its frame record) to every output."""
        from .keypoints import frame_record, header_record

        try:
            w, h = (int(v) for v in result.frame_size)
            key = (getattr(skeleton, "name", None), tuple(skeleton.joints), w, h, tuple(sorted(self._fields.items())))
            if key != self._key:
                self._key = key
                header = header_record(skeleton, {**self._fields, "width": w, "height": h})
                for out in self.outputs:
                    out.begin(header)
            wanting = [out for out in self.outputs if out.wants_frames]
            if not wanting:
                return
            record = frame_record(result, skeleton)
            for out in wanting:
                out.send(record)
        except Exception as e:   # a live output must never stop the run
            what = f"{type(e).__name__}: {e}"
            if what not in self._errors:
                self._errors.add(what)
                log.exception("live keypoints output failed")

    def close(self) -> None:
        """Close every output (the server flushes its clients first); idempotent."""
        for out in self.outputs:
            try:
                out.close()
            except Exception:
                log.exception("closing a live keypoints output failed")


def open_live_outputs(serve: tuple[str, int] | None, osc: tuple[str, int] | None, announce=None) -> LiveOutputs | None:
    """The live outputs that ``--serve HOST:PORT`` and ``--osc HOST:PORT`` ask for (None when
    neither), started now: the server listens before the first frame.

    Args:
        serve: (host, port) of the WebSocket server, or None.
        osc: (host, port) of the OSC receiver, or None.
        announce: called with one line per output (where it serves or sends; a note when the
            server accepts other machines), e.g. ``print``.
    Raises:
        StreamError: one of them cannot start (one line); nothing is left open then.
    """
    if serve is None and osc is None:
        return None
    say = announce or (lambda line: None)
    server = sender = None
    try:
        if serve is not None:
            server = KeypointsServer(*serve)
            say(f"streaming keypoints on {server.url} (WebSocket: the header, then one JSON message per frame)")
            if not is_loopback(serve[0]):
                say(f"note: --serve {serve[0]} accepts clients from other machines: anyone who can reach this "
                    "one can read the poses")
        if osc is not None:
            from .osc import OscSender

            sender = OscSender(*osc)
            host, port = osc
            say(f"sending OSC to {f'[{host}]' if ':' in host else host}:{port} (/deeppose/...)")
    except BaseException:
        if server is not None:
            server.close()
        raise
    return LiveOutputs(server, sender)
