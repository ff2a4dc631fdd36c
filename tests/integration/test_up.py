"""``ntplatform up`` from nothing: its own Redis, the replay exchange and a producer."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request

import pytest
import redis

from tests.conftest import PYTHON, ManagedProcess, free_port, python_env, wait_for

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def test_up_starts_everything_reports_flow_and_ctrl_c_stops_it_all(processes, tmp_path):
    redis_port, exchange_port, base_port = free_port(), free_port(), free_port() - 1
    node_port = base_port + 1
    up = ManagedProcess(
        [
            PYTHON,
            "-m",
            "ntplatform.cli",
            "up",
            "--exchange-port",
            str(exchange_port),
            "--metrics-base-port",
            str(base_port),
        ],
        python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"),
        tmp_path / "up.log",
    )
    processes.append(up)
    client = redis.Redis(port=redis_port, socket_timeout=2)

    wait_for(
        lambda: client.get("report:BTCUSDT") and client.get("report:ETHUSDT"),
        60,
        "reports for both symbols within 60 s",
    )
    wait_for(lambda: _health(node_port)["status"] == "ok", 30, "/health ok")

    before = {s: client.xlen(f"report:stream:{s}") for s in ("BTCUSDT", "ETHUSDT")}
    time.sleep(5)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        rate = (client.xlen(f"report:stream:{symbol}") - before[symbol]) / 5
        assert 3.0 <= rate <= 4.5, f"{symbol}: {rate} reports/s, expected about 4"
        report = json.loads(client.get(f"report:{symbol}"))
        assert 0 <= report["data_age_ms"] < 1000
    health = _health(node_port)
    assert health["redis"]["connected"] is True
    assert health["coordination"]["owned_symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert "ntplatform is up" in up.output()

    assert up.stop(signal.SIGINT, timeout_s=60) == 0
    assert not _port_open(redis_port), "the Redis that up started is still running"
    assert not _port_open(exchange_port)
    assert not _port_open(node_port)
    assert '"event":"shutdown_complete"' in up.output()
