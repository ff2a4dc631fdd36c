"""The producer facing bad settings, a missing Redis and a stop signal."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.conftest import (
    PYTHON,
    SHARED_DATA,
    ManagedProcess,
    RedisProcess,
    free_port,
    python_env,
    start_replay_exchange,
    wait_for,
)

pytestmark = pytest.mark.integration


def _events(output: str) -> list[dict]:
    events = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NT_LEASE_TTL_MS", "100", "NT_LEASE_TTL_MS=100: must exceed NT_REPORT_PERIOD_MS (250)"),
        ("SYMBOLS", "BTC-USDT", "SYMBOLS='BTC-USDT'"),
        ("NT_REPORT_PERIOD_MS", "soon", "NT_REPORT_PERIOD_MS='soon': an integer >= 10"),
        ("NT_BINANCE_ACCOUNT", "margin", "one of spot, usdm"),
    ],
)
def test_producer_bad_configuration_exits_2_with_one_line(variable, value, expected):
    port = free_port()
    result = subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "producer"],
        env=python_env(**{variable: value}, REDIS_URL=f"redis://127.0.0.1:{port}/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_producer_without_redis_retries_with_backoff_then_recovers(processes, tmp_path):
    exchange_port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot")
    redis_port = free_port()
    redis_url = f"redis://:s3cret-pw@127.0.0.1:{redis_port}/0"
    producer = ManagedProcess(
        [PYTHON, "-m", "ntplatform.cli", "producer"],
        python_env(
            REDIS_URL=redis_url,
            NT_METRICS_PORT=str(free_port()),
            NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{exchange_port}",
            NT_BINANCE_WS_URL=f"ws://127.0.0.1:{exchange_port}",
        ),
        tmp_path / "producer.log",
    )
    processes.append(producer)

    def unavailable_events() -> list[dict]:
        return [e for e in _events(producer.output()) if e["event"] == "redis_unavailable"]

    wait_for(lambda: len(unavailable_events()) >= 3, 60, "three redis_unavailable attempts")
    attempts = unavailable_events()
    assert [e["attempt"] for e in attempts[:3]] == [1, 2, 3]
    assert [e["retry_in_s"] for e in attempts[:3]] == [0.5, 1.0, 2.0]
    assert producer.process.poll() is None, "the producer must keep running, not crash-loop"
    assert "s3cret-pw" not in producer.output()
    assert str(redis_port) in attempts[0]["redis_url"]

    server = RedisProcess(tmp_path, port=redis_port, password="s3cret-pw")  # noqa: S106 - test-only
    server.start()
    try:
        wait_for(
            lambda: any(e["event"] == "redis_recovered" for e in _events(producer.output())),
            30,
            "redis_recovered",
        )
        client = server.client()
        wait_for(lambda: client.get("report:BTCUSDT"), 60, "a report after Redis came back")
        assert producer.stop(signal.SIGTERM) == 0
        assert any(e["event"] == "shutdown_complete" for e in _events(producer.output()))
        assert "Traceback" not in producer.output()
    finally:
        server.stop()


def _run_producer_until_exit(redis_url: str, exchange_port: int, **env: str) -> subprocess.CompletedProcess:
    """Run a producer with a 3 s exchange-connect timeout and wait for it to exit."""
    return subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "producer"],
        env=python_env(
            REDIS_URL=redis_url,
            NT_METRICS_PORT=str(free_port()),
            NT_EXCHANGE_CONNECT_TIMEOUT_SEC="3",
            NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{exchange_port}",
            NT_BINANCE_WS_URL=f"ws://127.0.0.1:{exchange_port}",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_producer_with_unreachable_exchange_exits_1_naming_the_exchange(redis_server, tmp_path):
    dead_port = free_port()
    result = _run_producer_until_exit(redis_server.url, dead_port)
    assert result.returncode == 1
    fatal = [e for e in _events(result.stdout) if e["event"] == "fatal_error"]
    assert fatal[0]["reason"] == "exchange_connect_failed"
    assert str(dead_port) in fatal[0]["exchange"]
    assert str(dead_port) in fatal[0]["error"]  # NautilusTrader's HTTP error names the URL
    assert any(e["event"] == "shutdown_complete" for e in _events(result.stdout))
    # It never joined the fleet: no heartbeat, and no lease taken from nodes that can publish.
    assert not any(e["event"] in ("symbol_acquired", "node_joined") for e in _events(result.stdout))
    assert redis_server.client().keys("*") == []
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("account", ["spot", "usdm"])
def test_a_symbol_the_exchange_does_not_list_is_left_out_and_the_others_flow(
    account, redis_server, processes, tmp_path
):
    # One delisted or misspelt symbol in the fleet's SYMBOLS must not stop every node: Binance
    # refuses a spot exchangeInfo naming it (-1121) and NautilusTrader's loader fails the lot.
    exchange_port = start_replay_exchange(processes, tmp_path, SHARED_DATA / account)
    metrics_port = free_port()
    producer = ManagedProcess(
        [PYTHON, "-m", "ntplatform.cli", "producer"],
        python_env(
            REDIS_URL=redis_server.url,
            SYMBOLS="BTCUSDT,XRPUSDT",
            NT_BINANCE_ACCOUNT=account,
            NT_METRICS_PORT=str(metrics_port),
            NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{exchange_port}",
            NT_BINANCE_WS_URL=f"ws://127.0.0.1:{exchange_port}",
        ),
        tmp_path / "producer.log",
    )
    processes.append(producer)
    client = redis_server.client()
    wait_for(lambda: client.get("report:BTCUSDT"), 90, "BTCUSDT reports beside the unlisted XRPUSDT")

    events = _events(producer.output())
    (unlisted,) = [e for e in events if e["event"] == "symbols_not_listed"]
    assert (unlisted["symbols"], unlisted["loading"], unlisted["account"]) == (
        ["XRPUSDT"],
        ["BTCUSDT"],
        account,
    )
    (missing,) = [e for e in events if e["event"] == "instrument_not_found"]
    assert missing["symbol"] == "XRPUSDT"
    health = wait_for(lambda: _health(metrics_port), 30, "/health")
    assert isinstance(health, dict)
    assert health["status"] == "degraded"
    assert health["unavailable_symbols"] == ["XRPUSDT"]
    assert client.get("report:XRPUSDT") is None
    assert producer.process.poll() is None
    assert producer.stop(signal.SIGTERM) == 0
    assert "Traceback" not in producer.output()


def test_producer_with_no_listed_symbol_at_all_exits_2_naming_them(redis_server, processes, tmp_path):
    exchange_port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot")
    result = _run_producer_until_exit(redis_server.url, exchange_port, SYMBOLS="XRPUSDT,DOGEUSDT")
    assert result.returncode == 2  # a setting to fix: `up` stops instead of restarting it
    events = _events(result.stdout)
    (unlisted,) = [e for e in events if e["event"] == "symbols_not_listed"]
    assert unlisted["symbols"] == ["DOGEUSDT", "XRPUSDT"]
    fatal = next(e for e in events if e["event"] == "fatal_error")
    assert fatal["reason"] == "no_instrument_available"
    assert any(e["event"] == "shutdown_complete" for e in events)
    assert redis_server.client().keys("*") == []  # nothing to publish: it never joined the fleet
    assert "Traceback" not in result.stdout + result.stderr


def _health(port: int) -> dict | None:
    """/health's JSON whatever its status code (503 while degraded)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))
