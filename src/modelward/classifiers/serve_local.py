"""Serve any classifier on 127.0.0.1 with the remote JSON protocol, for tests, examples and docs.

This is a small threaded standard-library server, not the production gateway (no authentication,
no TLS, loopback only). It speaks exactly what ``RemoteClassifier`` expects: ``POST /predict`` with
``{"inputs": [...]}`` answers ``{"scores": [[...]]}`` or ``{"labels": [...]}``. Bodies are size
limited, bad JSON or bad inputs get HTTP 400 with ``{"error": ...}``, a spent budget of the served
classifier gets 429, and the server counts the requests and inputs it answered so a client's query
accounting can be checked against it.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import orjson
import torch

from modelward.classifiers.base import Capability, Classifier, ClassifierError, QueryBudgetExceeded

PREDICT_PATH = "/predict"
HEALTH_PATH = "/health"


class LocalServer:
    """A running local endpoint; use it as a context manager, or call ``close()``.

    ``url`` is the full predict URL. ``requests`` counts answered predict requests and ``inputs``
    the inputs they classified (the queries the endpoint actually served).
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        output: Literal["scores", "labels"] = "scores",
        port: int = 0,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_batch: int = 4096,
    ) -> None:
        if output not in ("scores", "labels"):
            raise ClassifierError(f"output must be 'scores' or 'labels', got {output!r}")
        if output == "scores":
            classifier.require(Capability.SCORES, by="a scores endpoint")
        if max_body_bytes < 1 or max_batch < 1:
            raise ClassifierError("max_body_bytes and max_batch must be positive")
        self.classifier = classifier
        self.output: Literal["scores", "labels"] = output
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.requests = 0
        self.inputs = 0
        self._lock = threading.Lock()  # one model call at a time; counters stay consistent
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        host, bound_port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{bound_port}{PREDICT_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="modelward-serve-local", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def answer(self, payload: Any) -> tuple[HTTPStatus, dict[str, Any]]:
        """Classify one decoded request body; returns the HTTP status and the JSON object to send."""
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
            return HTTPStatus.BAD_REQUEST, {"error": 'body must be a JSON object {"inputs": [...]}'}
        inputs = payload["inputs"]
        if len(inputs) > self.max_batch:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"at most {self.max_batch} inputs per request"}
        try:
            x = torch.tensor(inputs, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            return HTTPStatus.BAD_REQUEST, {"error": "inputs must be equally shaped nested lists of numbers"}
        with self._lock:
            try:
                if self.output == "scores":
                    result: dict[str, Any] = {"scores": self.classifier.probabilities(x).tolist()}
                else:
                    result = {"labels": self.classifier.predict(x).tolist()}
            except QueryBudgetExceeded as exc:
                return HTTPStatus.TOO_MANY_REQUESTS, {"error": str(exc)}
            except ClassifierError as exc:
                return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
            self.requests += 1
            self.inputs += int(x.shape[0])
        return HTTPStatus.OK, result


def serve_classifier(
    classifier: Classifier,
    *,
    output: Literal["scores", "labels"] = "scores",
    port: int = 0,
    max_body_bytes: int = 16 * 1024 * 1024,
    max_batch: int = 4096,
) -> LocalServer:
    """Start serving ``classifier`` on 127.0.0.1 (``port=0``: an ephemeral port) in a background thread."""
    return LocalServer(classifier, output=output, port=port, max_body_bytes=max_body_bytes, max_batch=max_batch)


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one ``LocalServer``."""

    class Handler(BaseHTTPRequestHandler):
        """Routes ``POST /predict`` and ``GET /health``; everything else is 404 or 405."""

        timeout = 30  # seconds a silent client may hold a connection thread
        server_version = "modelward-local"
        sys_version = ""

        def do_POST(self) -> None:
            if self.path != PREDICT_PATH:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"unknown path; POST {PREDICT_PATH}"})
                return
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
                return
            try:
                length = int(length_header)
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be an integer"})
                return
            if length < 0 or length > server.max_body_bytes:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {server.max_body_bytes} bytes"})
                return
            body = self.rfile.read(length)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "body is not valid JSON"})
                return
            try:
                status, answer = server.answer(payload)
            except Exception:  # a model failure is the server's fault, reported without a traceback
                status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the model failed on this input"}
            self._send(status, answer)

        def do_GET(self) -> None:
            if self.path == HEALTH_PATH:
                self._send(HTTPStatus.OK, {"status": "ok"})
            elif self.path == PREDICT_PATH:
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "unknown path"})

        def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            body = orjson.dumps(payload)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status >= 400:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client went away (e.g. it timed out): nothing left to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: tests and docs should not print access logs."""

    return Handler
