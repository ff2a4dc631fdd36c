"""HTTP endpoints of a producer node: ``/metrics`` (Prometheus) and ``/health`` (JSON)."""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from producer.health import NodeState
from producer.metrics import ProducerMetrics


class NodeHttpServer:
    """Serves one node's metrics and health from a daemon thread."""

    def __init__(self, host: str, port: int, metrics: ProducerMetrics, state: NodeState) -> None:
        handler = _make_handler(metrics, state)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="node-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(metrics: ProducerMetrics, state: NodeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        _head_only = False

        def do_HEAD(self) -> None:
            """As GET without the body: load balancers and some probes check health so."""
            self._head_only = True
            try:
                self.do_GET()
            finally:
                self._head_only = False

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif path == "/health":
                document = state.snapshot()
                status = HTTPStatus.SERVICE_UNAVAILABLE if document["status"] == "degraded" else HTTPStatus.OK
                self._send(status, "application/json", orjson.dumps(document))
            else:
                body = orjson.dumps({"error": f"no such path {path}; try /metrics or /health"})
                self._send(HTTPStatus.NOT_FOUND, "application/json", body)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not self._head_only:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes are not worth a log line each."""

    return Handler
