"""End to end: ``ntplatform up`` with 3 producers, the Dagster webserver and daemon; faults are
injected and the daemon's sensors launch the runs that repair them.

1. A producer is frozen with SIGSTOP: ``producer_heartbeat_sensor`` launches
   ``restart_producer``, which restarts it through the supervisor; its heartbeat returns from
   a new pid and the run's metadata names the node and the diagnosis.
2. A symbol's subscription is muted at the exchange (``mute``: the data silently stops until
   the subscriber resubscribes): ``market_data_staleness_sensor`` launches
   ``resubscribe_symbol``, the owner renews its streams on a signed command and the symbol's
   reports are fresh again while the fault is still active.

Runs are read from the test's own Dagster instance (a private ``DAGSTER_HOME``).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import redis

from tests.conftest import PYTHON, ManagedProcess, free_port, python_env, wait_for
from tests.integration.dagster_web import private_home

pytestmark = pytest.mark.integration
SECRET = "end-to-end control secret of this test"  # noqa: S105 - the test's own
NODES = ["producer-node-001", "producer-node-002", "producer-node-003"]


class Platform:
    """``ntplatform up --nodes 3`` with Dagster, every port and store private to the test."""

    def __init__(self, processes: list[ManagedProcess], tmp_path: Path) -> None:
        self.home = private_home(tmp_path)
        self.redis_port, self.exchange_port, self.dagster_port = free_port(), free_port(), free_port()
        self.base_port, control_port = free_port() - 1, free_port()
        argv = [PYTHON, "-m", "ntplatform.cli", "up", "--nodes", "3"]
        argv += ["--exchange-port", str(self.exchange_port), "--metrics-base-port", str(self.base_port)]
        argv += ["--control-port", str(control_port), "--dagster-port", str(self.dagster_port)]
        env = python_env(
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            DAGSTER_HOME=str(self.home),
            NT_ARCHIVE_DIR=str(tmp_path / "archive"),
            NT_CONTROL_SECRET=SECRET,
        )
        self.up = ManagedProcess(argv, env, tmp_path / "up.log")
        processes.append(self.up)
        self.redis = redis.Redis(port=self.redis_port, socket_timeout=2)

    def wait_up(self) -> None:
        def ready() -> bool:
            assert self.up.process.poll() is None, f"up exited:\n{self.up.output()[-3000:]}"
            return "ntplatform is up" in self.up.output()

        wait_for(ready, 240, "3 healthy producers and the Dagster webserver")

    def heartbeat(self, node: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"nt:node:{node}")
        return None if raw is None else dict(json.loads(raw))

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def finished_run(self, job: str, timeout_s: float) -> dg.DagsterRun:
        """The first run of ``job`` once it finished; fails if it did not succeed."""

        def finished() -> dg.DagsterRun | None:
            assert self.up.process.poll() is None, f"up exited:\n{self.up.output()[-3000:]}"
            with self.instance() as instance:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
            done = [r for r in runs if r.is_finished]
            return done[-1] if done else None

        run = wait_for(finished, timeout_s, f"a finished {job} run", interval_s=2)
        assert isinstance(run, dg.DagsterRun)
        assert run.status == dg.DagsterRunStatus.SUCCESS, self._run_log(run)
        return run

    def output_metadata(self, run: dg.DagsterRun) -> dict[str, Any]:
        with self.instance() as instance:
            records = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        (record,) = records
        metadata = record.dagster_event.step_output_data.metadata
        return {key: getattr(value, "value", value) for key, value in metadata.items()}

    def _run_log(self, run: dg.DagsterRun) -> str:
        with self.instance() as instance:
            return "\n".join(str(r.user_message) for r in instance.all_logs(run.run_id))[-4000:]

    def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.exchange_port}/_replay/faults",
            data=json.dumps(body).encode(),
            method="POST" if body else "GET",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def report(self, symbol: str) -> dict[str, Any]:
        return dict(json.loads(self.redis.get(f"report:{symbol}") or b"{}"))


def test_sensors_restart_a_frozen_producer_and_resubscribe_a_stale_symbol(processes, tmp_path, monkeypatch):
    platform = Platform(processes, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(platform.home))  # the instance's config reads it
    platform.wait_up()
    wait_for(lambda: all(platform.heartbeat(n) for n in NODES), 60, "three heartbeats")

    # 1. Freeze a producer: the heartbeat sensor launches restart_producer.
    frozen = platform.heartbeat("producer-node-002")
    assert frozen is not None
    os.kill(frozen["pid"], signal.SIGSTOP)
    frozen_at = time.monotonic()
    run = platform.finished_run("restart_producer", timeout_s=240)
    print(f"restart_producer finished {time.monotonic() - frozen_at:.0f} s after SIGSTOP")
    assert run.tags["ntplatform/nodes"] == "producer-node-002"
    assert run.tags["ntplatform/trigger"] == "producer_heartbeat"
    metadata = platform.output_metadata(run)
    assert metadata["node"] == "producer-node-002"
    assert metadata["outcome"] == "heartbeat_returned"
    assert metadata["old_pid"] == str(frozen["pid"])
    assert "node_down producer-node-002" in metadata["verdict"]
    detected = metadata["diagnosis"]["at_detection"]
    assert [(f["kind"], f["node"]) for f in detected] == [("node_down", "producer-node-002")]
    back = platform.heartbeat("producer-node-002")
    assert back is not None
    assert back["pid"] == int(metadata["new_pid"])
    assert back["pid"] != frozen["pid"]

    # 2. Mute a symbol at the exchange: the staleness sensor launches resubscribe_symbol.
    symbol = "BTCUSDT"
    wait_for(lambda: platform.report(symbol).get("data_age_ms", 10**9) < 1000, 60, f"{symbol} fresh")
    platform.fault({"fault": "mute", "seconds": 900, "symbol": symbol})
    wait_for(lambda: platform.report(symbol)["data_age_ms"] > 5000, 60, f"{symbol} stale")
    run = platform.finished_run("resubscribe_symbol", timeout_s=240)
    assert run.tags["ntplatform/symbols"] == symbol
    metadata = platform.output_metadata(run)
    assert metadata["outcome"] == "recovered"
    (command,) = metadata["remediation"]["commands"]
    assert command["acks"][0]["outcome"] == "accepted"
    assert command["node"] == run.tags["ntplatform/nodes"]
    assert platform.report(symbol)["data_age_ms"] < 1000
    (muted,) = platform.fault({})["active"]
    assert muted["fault"] == "mute"
    assert muted["remaining_s"] > 0  # recovered by the resubscription, not by the fault ending

    assert platform.up.stop(signal.SIGINT, timeout_s=90) == 0
