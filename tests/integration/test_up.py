"""``ntplatform up`` from nothing: its own Redis, the replay exchange and a producer."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import pytest
import redis

from tests.conftest import PYTHON, UP_SECRET, ManagedProcess, free_port, python_env, wait_for

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


def _seq(client: redis.Redis, symbol: str) -> int:
    try:
        raw = client.get(f"report:{symbol}")
    except redis.RedisError:  # not started again yet
        return 0
    return int(json.loads(raw)["seq"]) if raw else 0


def _start_up(processes, tmp_path, **env: str) -> tuple[ManagedProcess, int, int, int]:
    """``ntplatform up`` on free ports with its own Redis; returns it and the ports."""
    redis_port, exchange_port, base_port = free_port(), free_port(), free_port() - 1
    up = ManagedProcess(
        [
            PYTHON,
            "-m",
            "ntplatform.cli",
            "up",
            "--no-dagster",  # tests/integration/test_dagster_remediation.py runs it with Dagster
            "--exchange-port",
            str(exchange_port),
            "--metrics-base-port",
            str(base_port),
        ],
        python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", NT_CONTROL_SECRET=UP_SECRET, **env),
        tmp_path / "up.log",
    )
    processes.append(up)
    return up, redis_port, exchange_port, base_port


def test_up_starts_everything_reports_flow_and_ctrl_c_stops_it_all(processes, tmp_path):
    up, redis_port, exchange_port, base_port = _start_up(processes, tmp_path)
    node_port = base_port + 1
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
    _check_spec_metrics(node_port)

    # The Redis that up started dies: up starts it again (empty) and reports resume, seq rising.
    last_seq = json.loads(client.get("report:BTCUSDT"))["seq"]
    os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
    wait_for(lambda: '"event":"process_restarted","name":"redis"' in up.output(), 60, "up to restart Redis")
    wait_for(lambda: _seq(client, "BTCUSDT") > last_seq, 60, "reports in the new Redis")
    assert '"event":"process_exited","name":"redis"' in up.output()

    assert up.stop(signal.SIGINT, timeout_s=60) == 0
    assert not _port_open(redis_port), "the Redis that up started is still running"
    assert not _port_open(exchange_port)
    assert not _port_open(node_port)
    assert '"event":"shutdown_complete"' in up.output()


SPEC_METRICS = {
    # name as exported: (type, label names)
    "nt_data_age_ms": ("histogram", {"symbol"}),
    "nt_calc_latency_ms": ("histogram", {"cycle"}),
    "nt_report_publish_total": ("counter", {"symbol"}),
    "nt_lease_conflicts_total": ("counter", {"symbol"}),
    "nt_hrw_rebalances_total": ("counter", set()),
    "nt_node_heartbeat": ("gauge", {"node_id"}),
    "nt_symbols_assigned": ("gauge", {"node_id"}),
    "nt_ws_resubscribe_total": ("counter", {"reason"}),
}


def _check_spec_metrics(port: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    for name, (kind, labels) in SPEC_METRICS.items():
        family = families.get(name.removesuffix("_total"))
        assert family is not None, f"{name} missing from /metrics"
        assert family.type == kind, f"{name} is a {family.type}, expected {kind}"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, f"{sample.name} labels {sample.labels}"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("nt_node_heartbeat", (("node_id", "producer-node-001"),))] == 1
    assert samples[("nt_symbols_assigned", (("node_id", "producer-node-001"),))] == 2
    assert samples[("nt_ws_resubscribe_total", (("reason", "symbol_acquired"),))] == 2
    # Histogram buckets split at the alert thresholds (data age 1000/5000 ms, latency 200/1500 ms).
    data_age_bounds = {s.labels["le"] for s in families["nt_data_age_ms"].samples if "le" in s.labels}
    assert {"1000.0", "5000.0"} <= data_age_bounds
    latency_bounds = {s.labels["le"] for s in families["nt_calc_latency_ms"].samples if "le" in s.labels}
    assert {"200.0", "1500.0"} <= latency_bounds


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        # Valid, but the exchange lists none of them: the producer exits 2 after connecting.
        ({"SYMBOLS": "DOGEUSDT"}, '"event":"symbols_not_listed"'),
    ],
)
def test_up_stops_when_a_producer_is_misconfigured(processes, tmp_path, setting, says):
    up, redis_port, _, _ = _start_up(processes, tmp_path, **setting)
    wait_for(lambda: up.process.poll() is not None, 90, "up to give up on a misconfigured producer")
    assert up.process.returncode == 1
    output = up.output()
    assert says in output
    assert '"reason":"child_misconfigured"' in output
    assert '"event":"process_restarted"' not in output
    assert "ntplatform is up" not in output
    assert not _port_open(redis_port), "what up started must be stopped"


@pytest.mark.parametrize(
    ("argument", "setting", "expected"),
    [
        ("--speed=inf", {}, "--speed inf: must be a number above 0"),
        ("--exchange-port=99999", {}, "from 1 to 65535"),
        ("--dagster-port=0", {}, "--dagster-port 0: must be from 1 to 65535"),
        # The producers' and Dagster's settings are checked before anything starts, too.
        ("--nodes=2", {"NT_LEASE_TTL_MS": "100"}, "NT_LEASE_TTL_MS=100: must exceed NT_REPORT_PERIOD_MS"),
        ("--nodes=2", {"NT_REPORT_PERIOD_MS": "fast"}, "NT_REPORT_PERIOD_MS='fast': an integer >= 10"),
        ("--nodes=2", {"NT_EXPECTED_NODES": "a/b"}, "NT_EXPECTED_NODES='a/b': 1-64 letters, digits"),
    ],
)
def test_up_bad_argument_or_setting_exits_2_before_starting_anything(argument, setting, expected):
    import subprocess

    redis_port = free_port()
    env = python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", **setting)
    result = subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "up", argument], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""  # nothing logged: nothing was started
    assert not _port_open(redis_port)


def test_up_is_not_fooled_by_another_fleets_node_on_its_metrics_port(processes, tmp_path):
    """Another node answering /health on our port is named, and never counted as ours."""
    import http.server
    import threading

    class ForeignHealth(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "node_id": "producer-node-777"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    base_port = free_port() - 1
    foreign = http.server.ThreadingHTTPServer(("127.0.0.1", base_port + 1), ForeignHealth)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    try:
        redis_port, exchange_port = free_port(), free_port()
        argv = [PYTHON, "-m", "ntplatform.cli", "up", "--no-dagster", "--exchange-port", str(exchange_port)]
        up = ManagedProcess(
            [*argv, "--metrics-base-port", str(base_port), "--control-port", "0"],
            python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"),
            tmp_path / "up.log",
        )
        processes.append(up)
        wait_for(
            lambda: '"event":"metrics_port_answered_by_another_node"' in up.output(),
            90,
            "up to name the node answering on its metrics port",
        )
        # Our producer cannot bind the port: it exits, and the wait for health handles that.
        wait_for(lambda: '"event":"process_exited"' in up.output(), 60, "the producer's exit to be logged")
        warning = next(
            json.loads(line)
            for line in up.output().splitlines()
            if '"event":"metrics_port_answered_by_another_node"' in line
        )
        assert (warning["node_id"], warning["answering"]) == ("producer-node-001", "producer-node-777")
        assert "ntplatform is up" not in up.output()
        assert up.stop(signal.SIGINT, timeout_s=60) == 0
    finally:
        foreign.shutdown()
        foreign.server_close()


def test_up_refuses_node_ids_a_running_process_heartbeats_under(processes, tmp_path, redis_server):
    """A second ``up`` on the same Redis would run duplicate nodes: it stops, naming them."""
    heartbeat = {"node_id": "producer-node-001", "pid": os.getpid(), "host": socket.gethostname()}
    client = redis_server.client()
    client.set("nt:node:producer-node-001", json.dumps(heartbeat), px=60_000)
    argv = [PYTHON, "-m", "ntplatform.cli", "up", "--no-dagster", "--control-port", "0"]
    up = ManagedProcess(
        [*argv, "--exchange-port", str(free_port()), "--metrics-base-port", str(free_port() - 1)],
        python_env(REDIS_URL=redis_server.url, NT_CONTROL_SECRET=UP_SECRET),
        tmp_path / "up.log",
    )
    processes.append(up)

    wait_for(lambda: up.process.poll() is not None, 60, "up to refuse the node ids in use")
    refusal = next(
        json.loads(line) for line in up.output().splitlines() if '"reason":"node_ids_in_use"' in line
    )
    assert up.process.returncode == 1
    assert refusal["nodes"] == [heartbeat]
    assert '"name":"producer-node-001"' not in up.output()  # no producer was started
    assert json.loads(client.get("nt:node:producer-node-001")) == heartbeat  # the running node's is kept
