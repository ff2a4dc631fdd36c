"""A real Prometheus, loaded with the shipped alert rules, watches a real producer.

Faults are injected for real (a stalled feed, dropped WebSockets, a killed node) and each
alert must show up as pending or firing through Prometheus's own HTTP API.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import (
    PYTHON,
    ROOT,
    SHARED_DATA,
    ManagedProcess,
    free_port,
    python_env,
    start_replay_exchange,
    wait_for,
)

pytestmark = pytest.mark.integration
RULES = ROOT / "producer" / "config" / "prometheus-alerts.yml"


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    assert found, "prometheus not found: run `make setup` (installs Debian's prometheus package)"
    return found


def _post_fault(exchange_port: int, body: dict) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{exchange_port}/_replay/faults",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


class Prometheus:
    def __init__(self, processes: list[ManagedProcess], tmp_path: Path, targets: list[int]) -> None:
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: ntplatform-producers\n    static_configs:\n"
            f"      - targets: {json.dumps([f'127.0.0.1:{p}' for p in targets])}\n"
        )
        self.process = ManagedProcess(
            [
                _prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            python_env(),
            tmp_path / "prometheus.log",
        )
        processes.append(self.process)
        wait_for(lambda: self._get("/-/ready", raw=True), 60, "Prometheus to be ready")

    def _get(self, path: str, raw: bool = False):  # type: ignore[no-untyped-def]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            body = response.read()
        return body if raw else json.loads(body)

    def alerts(self) -> dict[str, str]:
        """Active alerts by name: ``pending`` or ``firing`` (firing wins)."""
        states: dict[str, str] = {}
        for alert in self._get("/api/v1/alerts")["data"]["alerts"]:
            name = alert["labels"]["alertname"]
            if states.get(name) != "firing":
                states[name] = alert["state"]
        return states


def test_real_faults_raise_their_alerts_in_a_real_prometheus(redis_server, processes, tmp_path):
    exchange_port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot")
    metrics_port = free_port()
    producer = ManagedProcess(
        [PYTHON, "-m", "ntplatform.cli", "producer"],
        python_env(
            REDIS_URL=redis_server.url,
            NT_METRICS_PORT=str(metrics_port),
            NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{exchange_port}",
            NT_BINANCE_WS_URL=f"ws://127.0.0.1:{exchange_port}",
        ),
        tmp_path / "producer.log",
    )
    processes.append(producer)
    wait_for(lambda: redis_server.client().get("report:BTCUSDT"), 60, "reports")
    prometheus = Prometheus(processes, tmp_path, [metrics_port])
    wait_for(lambda: prometheus._get("/api/v1/query?query=up")["data"]["result"], 30, "a first scrape")
    time.sleep(5)
    healthy = prometheus.alerts()
    assert "MarketDataStale" not in healthy, healthy
    assert "ProducerDown" not in healthy, healthy

    # A frozen feed: reports go on from the last book with a growing data age.
    _post_fault(exchange_port, {"fault": "stall", "seconds": 20})
    wait_for(lambda: "MarketDataStale" in prometheus.alerts(), 60, "MarketDataStale pending or firing")

    # The exchange drops every WebSocket, again and again: reconnects and book rebuilds.
    for _ in range(5):
        _post_fault(exchange_port, {"fault": "drop_connections"})
        time.sleep(3)
    wait_for(
        lambda: "ExcessiveWebSocketResubscriptions" in prometheus.alerts(),
        60,
        "ExcessiveWebSocketResubscriptions pending or firing",
    )

    # The node dies without a word.
    producer.process.send_signal(signal.SIGKILL)
    producer.process.wait()
    wait_for(lambda: "ProducerDown" in prometheus.alerts(), 60, "ProducerDown pending or firing")
