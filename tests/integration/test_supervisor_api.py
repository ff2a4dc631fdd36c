"""The control API of ``ntplatform up`` and ``restart_producer`` against real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest
import redis

from assets.resources import RedisResource
from ntplatform import keys
from sensors.remediation import restart_producer, restart_run_request
from sensors.resources import FleetResource, SupervisorResource
from tests.conftest import PYTHON, UP_SECRET, ManagedProcess, free_port, python_env, wait_for

pytestmark = pytest.mark.integration
NODE = "producer-node-002"


def _call(port: int, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _heartbeat_pid(client: redis.Redis, node: str) -> int | None:
    raw = client.get(keys.node_key(node))
    return int(json.loads(raw)["pid"]) if raw else None


def _start_up(processes: list[ManagedProcess], tmp_path: Any) -> tuple[ManagedProcess, int, int]:
    """``ntplatform up --nodes 2`` with its own Redis and control API on free ports."""
    redis_port, exchange_port, base_port, control_port = (
        free_port(),
        free_port(),
        free_port() - 1,
        free_port(),
    )
    argv = [PYTHON, "-m", "ntplatform.cli", "up", "--no-dagster", "--nodes", "2"]
    argv += ["--exchange-port", str(exchange_port)]
    argv += ["--metrics-base-port", str(base_port), "--control-port", str(control_port)]
    up = ManagedProcess(
        argv,
        python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", NT_CONTROL_SECRET=UP_SECRET),
        tmp_path / "up.log",
    )
    processes.append(up)
    return up, redis_port, control_port


def test_control_api_restarts_a_producer_restart_job_revives_a_frozen_one_and_flapping_is_refused(
    processes, tmp_path
):
    up, redis_port, port = _start_up(processes, tmp_path)
    client = redis.Redis(port=redis_port, socket_timeout=2)
    wait_for(
        lambda: _heartbeat_pid(client, "producer-node-001") and _heartbeat_pid(client, NODE), 90, "2 nodes"
    )
    stopped: list[int] = []
    try:
        _api_lists_restarts_and_names_unknown(port, client)
        fleet = FleetResource(redis=RedisResource(url=f"redis://127.0.0.1:{redis_port}/0"))
        resources = {"fleet": fleet, "supervisor": SupervisorResource(url=f"http://127.0.0.1:{port}")}
        _api_and_job_leave_redis_alone(up, port, resources)
        _restart_job_leaves_a_heartbeating_node_alone(port, resources, client)
        frozen = _heartbeat_pid(client, NODE)
        assert frozen is not None
        stopped.append(frozen)
        os.kill(frozen, signal.SIGSTOP)
        _restart_job_revives_frozen_node(frozen, resources, client)
        _flapping_is_refused(up, port, resources, client, stopped)
    finally:
        for pid in stopped:  # SIGCONT anything stopped here, in case it still exists
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert up.stop(signal.SIGINT, timeout_s=60) == 0
    assert '"event":"shutdown_complete"' in up.output()


def _api_lists_restarts_and_names_unknown(port: int, client: redis.Redis) -> None:
    status, listed = _call(port, "GET", "/processes")
    assert status == 200
    by_name = {p["name"]: p for p in listed}
    assert {"redis", "replay-exchange", "producer-node-001", NODE} <= set(by_name)
    assert set(by_name[NODE]) == {"name", "role", "pid", "alive", "restarts", "exit_code", "started_at"}
    assert by_name[NODE]["role"] == by_name["producer-node-001"]["role"] == "producer"
    assert (by_name["redis"]["role"], by_name["replay-exchange"]["role"]) == ("redis", "replay-exchange")
    assert by_name[NODE]["alive"] is True
    assert by_name[NODE]["restarts"] == 0
    assert by_name[NODE]["pid"] == _heartbeat_pid(client, NODE)

    status, restarted = _call(port, "POST", f"/processes/{NODE}/restart")
    assert status == 200
    assert restarted["name"] == NODE
    assert restarted["old_pid"] == by_name[NODE]["pid"]
    assert restarted["new_pid"] != restarted["old_pid"]
    wait_for(lambda: _heartbeat_pid(client, NODE) == restarted["new_pid"], 60, "heartbeat from the new pid")
    after = {p["name"]: p for p in _call(port, "GET", "/processes")[1]}
    assert after[NODE]["pid"] == restarted["new_pid"]
    assert after[NODE]["restarts"] == 1
    assert after["producer-node-001"]["pid"] == by_name["producer-node-001"]["pid"]

    status, error = _call(port, "POST", "/processes/producer-node-009/restart")
    assert status == 404
    assert "producer-node-009" in error["error"]
    assert NODE in error["error"]


def _restart_request(fleet: FleetResource, incident: str, node: str = NODE) -> Any:
    findings = fleet.diagnose(expected_nodes=[node]).of_kind("node_down")
    return restart_run_request(incident, "producer_heartbeat", findings, node)


def _run_restart_job(resources: dict[str, Any], incident: str, node: str = NODE) -> Any:
    request = _restart_request(resources["fleet"], incident, node)
    return restart_producer.execute_in_process(
        run_config=request.run_config, tags=request.tags, resources=resources, raise_on_error=False
    )


def _step_failure(result: Any) -> str:
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    return str(failure.step_failure_data.error)


def _api_and_job_leave_redis_alone(up: ManagedProcess, port: int, resources: dict[str, Any]) -> None:
    """Redis keeps nothing on disk: neither the API nor restart_producer restarts it."""
    redis_pid = {p["name"]: p["pid"] for p in _call(port, "GET", "/processes")[1]}["redis"]
    status, error = _call(port, "POST", "/processes/redis/restart")
    assert status == 403
    assert error["reason"] == "not_restartable"
    assert "wipe every report" in error["error"]
    refused = [line for line in up.output().splitlines() if '"event":"restart_refused"' in line]
    assert refused
    assert '"reason":"not_restartable"' in refused[-1]

    result = _run_restart_job(resources, "manual:redis", node="redis")
    assert not result.success
    message = _step_failure(result)
    assert "redis is the supervisor's redis process, not a producer" in message
    assert f"producer-node-001, {NODE}" in message
    assert {p["name"]: p["pid"] for p in _call(port, "GET", "/processes")[1]}["redis"] == redis_pid

    status, error = _call(port, "PUT", "/processes")  # JSON, as every other answer
    assert status == 404
    assert "no route PUT /processes" in error["error"]


def _restart_job_leaves_a_heartbeating_node_alone(
    port: int, resources: dict[str, Any], client: redis.Redis
) -> None:
    """A node heartbeating again when the run starts (Redis was held up, say) keeps running."""
    pid = _heartbeat_pid(client, NODE)
    result = _run_restart_job(resources, f"producer_down:{NODE}:expired")
    assert result.success
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    assert metadata["outcome"].value == "recovered_before_restart"
    assert metadata["restart"].value["heartbeat_pid"] == pid
    assert _heartbeat_pid(client, NODE) == pid
    restarts = {p["name"]: p["restarts"] for p in _call(port, "GET", "/processes")[1]}
    assert restarts[NODE] == 1  # the API's restart before, none since


def _restart_job_revives_frozen_node(frozen: int, resources: dict[str, Any], client: redis.Redis) -> None:
    wait_for(lambda: _heartbeat_pid(client, NODE) is None, 30, "the frozen node's heartbeat to expire")
    request = _restart_request(resources["fleet"], f"producer_down:{NODE}:frozen")
    result = restart_producer.execute_in_process(
        run_config=request.run_config, tags=request.tags, resources=resources
    )
    assert result.success
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    metadata = output.step_output_data.metadata
    restart = metadata["restart"].value
    assert metadata["node"].value == NODE
    assert restart["old_pid"] == frozen
    assert restart["outcome"] == "heartbeat_returned"
    assert restart["heartbeat_pid"] == restart["new_pid"] != frozen
    assert metadata["new_pid"].value == str(restart["new_pid"])
    diagnosis = metadata["diagnosis"].value
    assert [(f["kind"], f["node"]) for f in diagnosis["now"]] == [("node_down", NODE)]
    assert _heartbeat_pid(client, NODE) == restart["new_pid"]


def _flapping_is_refused(
    up: ManagedProcess, port: int, resources: dict[str, Any], client: redis.Redis, stopped: list[int]
) -> None:
    status, third = _call(port, "POST", f"/processes/{NODE}/restart")  # the third within 10 min
    assert status == 200
    status, error = _call(port, "POST", f"/processes/{NODE}/restart")
    assert status == 409
    assert "flapping" in error["error"]
    assert "restarted 3 times" in error["error"]
    refused = [
        line for line in up.output().splitlines() if '"event":"restart_refused"' in line and NODE in line
    ]
    assert refused
    assert '"reason":"flapping"' in refused[-1]
    assert '"reason":"api"' in up.output()

    frozen = third["new_pid"]
    wait_for(lambda: _heartbeat_pid(client, NODE) == frozen, 60, "a heartbeat from the third restart")
    stopped.append(frozen)
    os.kill(frozen, signal.SIGSTOP)  # down again: the job would restart it, but the budget is spent
    wait_for(lambda: _heartbeat_pid(client, NODE) is None, 30, "the frozen node's heartbeat to expire")
    result = _run_restart_job(resources, f"producer_down:{NODE}:flapping")
    assert not result.success
    assert "flapping: restart refused" in _step_failure(result)
