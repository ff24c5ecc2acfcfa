"""A threaded HTTP server that misbehaving clients cannot wedge, and who may ask it anything.

- A request head must arrive complete within `request_timeout_s`, or its connection is closed (a
  reaper thread enforces the deadline over the whole head, so a client trickling bytes is cut too).
- At most `max_connections` connections are served at once; beyond that a new connection gets a
  503 straight from the accepting thread and is closed, and the connections already open go on.
- A client that goes away at any point is a normal event: one debug line, never a traceback.
- Access: a `Host` header must name this server (a browser tricked by DNS rebinding sends the
  attacker's name), an `Origin` header (browsers send one with every write) must be this very
  server, and with a token every path but the open ones needs it, as `Authorization: Bearer TOKEN`
  or `?token=TOKEN`, compared in constant time.
- Writes (POST) take JSON only: another Content-Type is refused (415), so a page elsewhere cannot
  post a plain form here without the browser first asking this server (which never says yes); the
  body needs a Content-Length (411) of at most `MAX_JSON_BYTES` (413) and must be valid JSON with
  finite numbers (400). A write's refusals are JSON too: `{"error": "..."}`.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..errors import EX_CONFIG, UserError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0   # a request line and headers must be complete within this
SEND_TIMEOUT_S = 10.0     # a client that accepts no bytes for this long is dropped
MAX_CONNECTIONS = 64
REJECT_LINGER_S = 1.0     # a rejected socket stays half-open this long so its 503 is read, not reset
REAP_INTERVAL_S = 0.25
MAX_JSON_BYTES = 1 << 20  # a POST body larger than this is refused unread
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"]*")


class AccessPolicy:
    """Which Host names are served and which token (if any) is required, except on `open_paths`."""

    def __init__(self, bind_host: str, token: str | None = None, open_paths=("/healthz",)):
        self.token = token.encode() if token else None
        self.open_paths = frozenset(open_paths)
        hostname = socket.gethostname().lower()
        self.host_names = {"localhost", bind_host.lower(), hostname, f"{hostname}.local", socket.getfqdn().lower()}

    def host_is_served(self, host_header: str | None) -> bool:
        """IP literals cannot be rebound, so any is fine; a name must be one of this machine's."""
        if host_header is None:
            return True  # HTTP/1.0 tools; browsers, the only victims of rebinding, always send Host
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1:host.find("]")]
        elif host.count(":") == 1:  # name:port (more colons: a bare IPv6 address)
            host = host.partition(":")[0]
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return host.rstrip(".") in self.host_names

    @staticmethod
    def origin_is_served(origin: str | None, host_header: str | None) -> bool:
        """A browser names the site a request comes from in `Origin` (always on POST, and on a
        script's cross-site GET): it must be this very server, as the browser addressed it."""
        if origin is None:
            return True  # not a browser, or a same-site GET
        return urlsplit(origin).netloc.lower() == (host_header or "").strip().lower() != ""

    def token_ok(self, path: str, query: str, authorization: str | None) -> bool:
        if self.token is None or path in self.open_paths:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            presented = value.strip()
        else:
            presented = parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(presented.encode(), self.token)


class GuardedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, policy: AccessPolicy, max_connections: int = MAX_CONNECTIONS,
                 request_timeout_s: float = REQUEST_TIMEOUT_S):
        self.policy = policy
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.rejected = 0           # connections answered 503 because of the cap
        self.timed_out = 0          # connections closed because a request head did not arrive in time
        self._lock = threading.Lock()
        self._open: set = set()     # sockets with a handler thread
        self._deadlines: dict = {}  # socket -> monotonic time its request head must be complete by
        self._lingering: dict = {}  # rejected socket -> monotonic time to close it
        self._closed = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap_loop, name="http-reaper", daemon=True)
        self._reaper.start()

    @classmethod
    def bind(cls, host: str, port: int, handler, policy: AccessPolicy, serving: str, advice: str) -> "GuardedHTTPServer":
        """The server on host:port, or an EX_CONFIG UserError: cannot serve `serving` there, and `advice`."""
        try:
            return cls((host, port), handler, policy)
        except OSError as error:
            raise UserError(f"cannot serve {serving} on {host}:{port}: {error.strerror}. {advice}", EX_CONFIG) from None

    def start(self) -> None:
        """Serve on a thread of its own until `stop`."""
        threading.Thread(target=self.serve_forever, name="http", daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def connections(self) -> int:
        return len(self._open)

    # --- connection accounting ---
    def process_request(self, request, client_address):
        with self._lock:
            full = len(self._open) >= self.max_connections
            if not full:
                self._open.add(request)
        if full:
            self._reject(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError as error:  # no thread could be started: treat it as the cap
            log.warning("http: cannot start a thread for a connection (%s); closing it", error)
            self._forget(request)
            self._reject(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        with self._lock:
            self._open.discard(request)
            self._deadlines.pop(request, None)

    def _reject(self, request) -> None:
        self.rejected += 1
        body = b"the debug stream has too many connections; try again later\n"
        head = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        try:
            request.setblocking(False)  # the accepting thread must never wait on this client
            request.send(head + body)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        with self._lock:
            if len(self._lingering) < 4 * self.max_connections:
                self._lingering[request] = time.monotonic() + REJECT_LINGER_S
                return
        request.close()

    # --- request deadlines ---
    def watch(self, request) -> None:
        with self._lock:
            self._deadlines[request] = time.monotonic() + self.request_timeout_s

    def unwatch(self, request) -> None:
        with self._lock:
            self._deadlines.pop(request, None)

    def _reap_loop(self) -> None:
        while not self._closed.wait(REAP_INTERVAL_S):
            now = time.monotonic()
            with self._lock:
                late = [s for s, deadline in self._deadlines.items() if deadline <= now]
                for request in late:
                    del self._deadlines[request]
                done = [s for s, t_close in self._lingering.items() if t_close <= now]
                for request in done:
                    del self._lingering[request]
            for request in late:
                self.timed_out += 1
                log.debug("http: request not complete within %.0f s; closing the connection", self.request_timeout_s)
                _shutdown(request)  # its handler thread sees the end of the stream and finishes
            for request in done:
                _drain_and_close(request)

    def server_close(self) -> None:
        self._closed.set()
        with self._lock:
            open_now, lingering = list(self._open), list(self._lingering)
            self._lingering.clear()
        for request in open_now:
            _shutdown(request)  # viewers see the stream end now, not at the process's exit
        for request in lingering:
            _drain_and_close(request)
        super().server_close()

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, socket.timeout)):
            log.debug("http %s: connection ended: %s", client_address[0], error)
        else:  # a bug: one line in the log, the traceback only at debug level
            log.error("http %s: %s: %s (details with --log-level debug)", client_address[0],
                      type(error).__name__, error)
            log.debug("http handler failure", exc_info=True)


def _shutdown(request) -> None:
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _drain_and_close(request) -> None:
    try:
        request.recv(65536)  # unread request bytes would turn the close into a reset
    except OSError:
        pass
    request.close()


class GuardedHandler(BaseHTTPRequestHandler):
    """Applies the server's deadline and access policy; subclasses implement `route(path, query)`."""

    server: GuardedHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = SEND_TIMEOUT_S  # per blocking socket call, after the head has arrived

    def handle_one_request(self):
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self.connection)

    def parse_request(self):
        complete = super().parse_request()
        self.server.unwatch(self.connection)
        return complete

    def log_message(self, fmt, *args):
        log.debug("http %s: %s", self.client_address[0], _TOKEN_IN_TEXT.sub(r"\1***", fmt % args))

    def send_body(self, status: int, content_type: str, body: bytes, headers=()) -> None:
        """A whole answer, kept by no cache, its type not guessed by the browser, and no address of
        the page sent on from it (a ?token= stays on the page)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_text(self, status: int, text: str, headers=()) -> None:
        self.send_body(status, "text/plain; charset=utf-8", text.encode(), headers)

    def _access_ok(self, path: str, query: str) -> bool:
        """Host name and token; on refusal the answer is sent and False returned."""
        policy = self.server.policy
        if not policy.host_is_served(self.headers.get("Host")):
            self.send_text(403, "this server does not serve that Host name; use its address or localhost\n")
        elif not policy.origin_is_served(self.headers.get("Origin"), self.headers.get("Host")):
            self.send_text(403, "requests from pages of other sites are refused\n")
        elif not policy.token_ok(path, query, self.headers.get("Authorization")):
            self.send_text(401, "this page needs its access token: open /?token=TOKEN, or send "
                                "'Authorization: Bearer TOKEN'\n",
                           [("WWW-Authenticate", 'Bearer realm="robot-detector"')])
        else:
            return True
        return False

    def do_GET(self):  # noqa: N802 (http.server naming)
        path, _, query = self.path.partition("?")
        if self._access_ok(path, query):
            self.route(path, query)

    def do_POST(self):  # noqa: N802 (http.server naming)
        path, _, query = self.path.partition("?")
        if not self._access_ok(path, query):
            self.close_connection = True  # the unread body must not be taken for the next request
            return
        body = self._json_body()
        if body is not None:
            self.route_post(path, query, body[0])

    def _json_body(self):
        """(the parsed JSON body,), or None after answering why there is none."""
        self.close_connection = True
        content_type = (self.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        length = self.headers.get("Content-Length", "")
        if content_type != "application/json":
            self.send_json_error(415, f"writes take Content-Type: application/json, found {content_type or 'none'!r}")
        elif not length.isdigit():
            self.send_json_error(411, "a write needs a Content-Length header")
        elif int(length) > MAX_JSON_BYTES:
            self.send_json_error(413, f"a write may carry at most {MAX_JSON_BYTES} bytes, found {int(length)}")
        else:
            try:
                return (json.loads(self.rfile.read(int(length)), parse_constant=_refuse_constant),)
            except ValueError as error:
                self.send_json_error(400, f"the body is not valid JSON: {error}")
        return None

    def send_json_error(self, status: int, message: str) -> None:
        """A refused write: `{"error": message}`, what the pages show."""
        self.send_body(status, "application/json", json.dumps({"error": message}).encode())

    def route(self, path: str, query: str) -> None:
        raise NotImplementedError

    def route_post(self, path: str, query: str, body) -> None:
        self.send_text(405, "this server takes no writes\n", [("Allow", "GET")])


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")
