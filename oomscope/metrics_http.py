"""The HTTP endpoint of `record --metrics-addr`: prometheus_client's WSGI app behind a server whose
cost no client can grow.

prometheus_client's own server (``start_http_server``: a ``ThreadingWSGIServer``) gives every
connection a thread that waits for the request with no timeout: each idle connection held a
thread and a descriptor in the recorder's process for good (100 held after 7 s, issue 24), and
any pod that reaches the port can open them. Here one thread serves every connection with a
selector, so a connection costs a descriptor and a few KiB, never a thread, and

- at most MAX_CONNECTIONS are open: one more closes the oldest (an idle one, in practice: a
  scrape is answered within milliseconds of its request), so connections held open cannot keep
  a scrape out;
- a request must arrive whole (its headers: a GET has no body) within REQUEST_TIMEOUT_S of the
  connection, in at most MAX_REQUEST_BYTES; the answer must be taken within RESPONSE_TIMEOUT_S;
  then the connection is closed, whatever the client does;
- one request per connection (``Connection: close``), like prometheus_client's server.

The answer itself is prometheus_client's (``make_wsgi_app``: the exposition format the scraper
asks for, gzip when accepted), called with the request's method, path, query and Accept headers.
"""

from __future__ import annotations

import collections
import io
import selectors
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 5.0
RESPONSE_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 8192
_ACCEPT_PAUSE_S = 0.5  # after accept() fails for want of a descriptor: retried then, not in a busy loop


class _Conn:
    __slots__ = ("sock", "deadline", "inbuf", "out", "sent")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.inbuf = bytearray()
        self.out: Optional[memoryview] = None  # the response, once the request is whole
        self.sent = 0


class MetricsServer:
    """Serves ``app`` (a WSGI app) on ``host:port`` from one thread (``start``), until ``close``."""

    def __init__(self, host: str, port: int, app: Callable):
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _type, _proto, _name, sockaddr = infos[0]
        self._app = app
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(sockaddr)
            self._listener.listen(64)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.address: Tuple[str, int] = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._conns: "collections.OrderedDict[socket.socket, _Conn]" = collections.OrderedDict()  # oldest first
        self._accept_paused_until: Optional[float] = None
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self.refused = 0  # connections closed before their request was answered (timeout, too many, too big)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            self._expire(now)
            self._resume_accepting(now)
            waits = [c.deadline for c in self._conns.values()]
            if self._accept_paused_until is not None:
                waits.append(self._accept_paused_until)
            timeout = max(0.0, min(waits) - now) if waits else None
            for key, events in self._sel.select(timeout):
                try:
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                    else:
                        conn = self._conns.get(key.fileobj)
                        if conn is None:
                            continue
                        if events & selectors.EVENT_READ:
                            self._read(conn)
                        elif events & selectors.EVENT_WRITE:
                            self._write(conn)
                except Exception:  # one connection's trouble never ends the server
                    conn = self._conns.get(key.fileobj)
                    if conn is not None:
                        self._drop(conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self.refused += conn.out is None
            self._drop(conn)

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._sel.register(self._listener, selectors.EVENT_READ)

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, _addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError:  # EMFILE, ENFILE, ENOBUFS: the listener stays readable; wait a little
                self._sel.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_S
                return
            sock.setblocking(False)
            while len(self._conns) >= MAX_CONNECTIONS:
                _sock, oldest = next(iter(self._conns.items()))
                self.refused += oldest.out is None
                self._drop(oldest)
            conn = _Conn(sock, time.monotonic() + REQUEST_TIMEOUT_S)
            self._conns[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.inbuf += data
        end = _end_of_headers(conn.inbuf)
        if end < 0:
            if len(conn.inbuf) >= MAX_REQUEST_BYTES:
                self.refused += 1
                self._respond(conn, "431 Request Header Fields Too Large", [], b"")
            return
        self._respond(conn, *self._answer(bytes(conn.inbuf[:end])))

    def _respond(self, conn: _Conn, status: str, headers: List[Tuple[str, str]], body: bytes) -> None:
        head = [f"HTTP/1.1 {status}"]
        head += [f"{k}: {v}" for k, v in headers if k.lower() not in ("content-length", "connection")]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        conn.out = memoryview("\r\n".join(head).encode("latin-1") + body)
        conn.inbuf = bytearray()
        conn.deadline = time.monotonic() + RESPONSE_TIMEOUT_S
        self._sel.modify(conn.sock, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            conn.sent += conn.sock.send(conn.out[conn.sent:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if conn.sent >= len(conn.out):
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    # -- one request -----------------------------------------------------------------------

    def _answer(self, head: bytes) -> Tuple[str, List[Tuple[str, str]], bytes]:
        """The app's answer to a request's head (its request line and headers)."""
        lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", [], b""
        method, target, protocol = parts
        path, _, query = target.partition("?")
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        environ = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
            "SERVER_NAME": str(self.address[0]), "SERVER_PORT": str(self.address[1]), "SERVER_PROTOCOL": protocol,
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name in ("accept", "accept-encoding"):
            if name in headers:
                environ["HTTP_" + name.upper().replace("-", "_")] = headers[name]
        started: List = []

        def start_response(status, response_headers, exc_info=None):
            started[:] = [status, list(response_headers)]

        try:
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        except Exception:  # a failing collector: the scrape says so, the server goes on
            return "500 Internal Server Error", [], b""
        if not started:
            return "500 Internal Server Error", [], b""
        status, response_headers = started
        return status, response_headers, body


def _end_of_headers(buf: bytearray) -> int:
    """Where the request's head ends (its blank line), or -1 while it has not arrived."""
    found = [i for i in (buf.find(b"\r\n\r\n"), buf.find(b"\n\n")) if i >= 0]
    return min(found) if found else -1
