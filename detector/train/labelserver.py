"""`robot-detector label DATASET`: the labelling page and its small JSON API, served under the
daemon's HTTP rules (webserver.py: loopback by default, Host check, a token off loopback, JSON-only
writes, request limits). The files behind it are labelstore.py's; the page is label_page.html,
self-contained (nothing is fetched from the internet).

GET  /                        the page
GET  /api/dataset             {"classes", "low_confidence", "images": [{name, reviewed, classes, boxes}]}
GET  /api/labels?name=NAME    one image's state (labelstore.LabelStore.state)
GET  /image?name=NAME         the image file as it is
POST /api/labels              {"name", "version", "boxes": [{"class_id", "box"}], "reviewed"?} -> state
POST /api/undo                {"name", "version"} -> state
A refused change answers {"error": message} with 400, 404 or 409 (the file changed on disk).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import signal
import threading
from pathlib import Path
from urllib.parse import parse_qs

from ..daemon.config import Config, validate
from ..daemon.webserver import AccessPolicy, GuardedHandler, GuardedHTTPServer
from .labelstore import LabelStore, RequestError

log = logging.getLogger(__name__)

PAGE_HTML = Path(__file__).with_name("label_page.html")
DEFAULT_ADDRESS = "127.0.0.1:8090"


class LabelServer:
    def __init__(self, store: LabelStore, host: str, port: int, token: str | None = None,
                 low_confidence: float = 0.5):
        self.store = store
        self.low_confidence = low_confidence
        self.page = PAGE_HTML.read_bytes()
        handler = type("Handler", (_Handler,), {"app": self})
        self.server = GuardedHTTPServer.bind(host, port, handler, AccessPolicy(host, token, open_paths=()),
                                             "the labelling page", "Choose another address with --http HOST:PORT.")
        self.address = self.server.server_address[:2]

    def start(self) -> "LabelServer":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


class _Handler(GuardedHandler):
    app: LabelServer

    def _json(self, status: int, value) -> None:
        self.send_body(status, "application/json", json.dumps(value, allow_nan=False).encode())

    def _answer(self, action) -> None:
        try:
            self._json(200, action())
        except RequestError as error:
            if error.status == 409:
                log.warning("label change refused: %s", error)
            self._json(error.status, {"error": str(error)})

    def route(self, path: str, query: str) -> None:
        app, store = self.app, self.app.store
        name = parse_qs(query).get("name", [None])[0]
        if path == "/":
            self.send_body(200, "text/html; charset=utf-8", app.page)
        elif path == "/api/dataset":
            self._answer(lambda: {"root": str(store.root), "classes": list(store.class_names),
                                  "low_confidence": app.low_confidence, "images": store.summary()})
        elif path == "/api/labels":
            self._answer(lambda: store.state(name))
        elif path == "/image":
            try:
                image_path = store.image_path(name)
            except RequestError as error:
                self._json(error.status, {"error": str(error)})
                return
            content_type = mimetypes.guess_type(image_path.name)[0] or "application/octet-stream"
            self.send_body(200, content_type, image_path.read_bytes())
        else:
            self.send_body(404, "text/plain", b"not found: try /, /api/dataset, /api/labels?name=, /image?name=\n")

    def route_post(self, path: str, query: str, body) -> None:
        store = self.app.store
        if not isinstance(body, dict):
            self._json(400, {"error": f"expected a JSON object, found {type(body).__name__}"})
        elif path == "/api/labels":
            self._answer(lambda: store.write(body.get("name"), body.get("version"), body.get("boxes"),
                                             body.get("reviewed")))
        elif path == "/api/undo":
            self._answer(lambda: store.undo(body.get("name"), body.get("version")))
        else:
            self._json(404, {"error": f"no such write: {path} (the page writes /api/labels and /api/undo)"})


def check_address(http: str, token: str | None, insecure: bool) -> tuple:
    """(host, port) under `run`'s rules for the debug stream: a well-formed HOST:PORT, and a token
    (at least 16 printable characters) unless the host is loopback or `insecure`."""
    config = validate(Config(http=http, http_token=token, http_insecure=insecure))
    return config.http_address


def run_label_server(dataset, http: str = DEFAULT_ADDRESS, token: str | None = None, insecure: bool = False,
                     low_confidence: float = 0.5) -> int:
    """Serve the page until SIGINT/SIGTERM."""
    store = LabelStore(dataset)
    host, port = check_address(http, token, insecure)
    server = LabelServer(store, host, port, token, low_confidence).start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    bound_host, bound_port = server.address
    reviewed = sum(entry["reviewed"] for entry in store.summary())
    log.info("labelling %d images of %s (%d reviewed)", len(store.images), store.root, reviewed)
    print(f"labelling page: http://{bound_host}:{bound_port}/{'?token=TOKEN' if token else ''} "
          "(Ctrl-C stops)", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0
