"""The fleet sensors and ``diagnose_fleet`` against a private Redis the test fills itself."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import pytest

from assets.resources import RedisResource
from ntplatform import keys
from sensors.fleet_diagnosis import OP_NAME, TAG_INCIDENT, TAG_NODES, DiagnoseConfig, diagnose_fleet
from sensors.heartbeat import producer_heartbeat_sensor
from sensors.leases import lease_conflict_sensor
from sensors.resources import FleetResource
from tests.conftest import RedisProcess

pytestmark = pytest.mark.integration
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
STARTED = {"n1": 1_000_001, "n2": 1_000_002, "n3": 1_000_003}
OWNED = {"n1": ["BTCUSDT"], "n2": ["ETHUSDT"], "n3": ["SOLUSDT"]}


def _fleet(server: RedisProcess, **over: Any) -> FleetResource:
    return FleetResource(redis=RedisResource(url=server.url), symbols=SYMBOLS, **over)


def _redis_ms(server: RedisProcess) -> int:
    seconds, micros = server.client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def _heartbeat(server: RedisProcess, node: str, **over: Any) -> None:
    body = {
        "node_id": node,
        "pid": 4242,
        "host": "vm",
        "started_ms": STARTED[node],
        "wall_ms": _redis_ms(server),
        "owned_symbols": OWNED[node],
        "fencing_tokens": dict.fromkeys(OWNED[node], 1),
        "config_fingerprint": "825beeca6c66",
        "lease_ttl_ms": 2000,
        "min_hold_ms": 2000,
        "heartbeat_interval_ms": 1000,
        "rebalance_interval_sec": 2.5,
        "metrics_port": 9101,
        **over,
    }
    server.client().set(keys.node_key(node), json.dumps(body), px=5000)


def _lease(server: RedisProcess, symbol: str, holder: str, token: int = 1, px: int | None = 60_000) -> None:
    client = server.client()
    client.set(keys.writer_key(symbol), holder, px=px)
    client.set(keys.token_key(symbol), token)


def _healthy(server: RedisProcess) -> None:
    for node in ("n1", "n2", "n3"):
        _heartbeat(server, node)
        _lease(server, OWNED[node][0], node)


def _tick(sensor: Any, fleet: FleetResource, cursor: str | None) -> dg.SensorResult:
    # FleetResource nests RedisResource, so the resources are built inside a context manager.
    with dg.build_sensor_context(cursor=cursor, resources={"fleet": fleet}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _op_config(request: dg.RunRequest) -> dict[str, Any]:
    (op_config,) = request.run_config["ops"].values()  # diagnose_fleet or a remediation job: one op
    return dict(op_config["config"])


def _diagnosis_metadata(fleet: FleetResource, request: dg.RunRequest) -> dict[str, Any]:
    """What ``diagnose_fleet`` records for the incident of ``request`` (whichever job it launches)."""
    config = {k: v for k, v in _op_config(request).items() if k in DiagnoseConfig.model_fields}
    result = diagnose_fleet.execute_in_process(
        run_config={"ops": {OP_NAME: {"config": config}}}, tags=request.tags, resources={"fleet": fleet}
    )
    assert result.success
    outputs = [e for e in result.all_node_events if e.is_successful_output]
    assert len(outputs) == 1
    return dict(outputs[0].step_output_data.metadata)


def test_heartbeat_sensor_healthy_down_duplicate_and_recovery(redis_server: RedisProcess) -> None:
    fleet = _fleet(redis_server)
    _healthy(redis_server)
    first = _tick(producer_heartbeat_sensor, fleet, None)
    assert not first.run_requests
    assert first.skip_reason is not None
    assert first.skip_reason.skip_message == "all 3 producers heartbeating"
    assert first.cursor is not None
    assert set(json.loads(first.cursor)["live"]) == {"n1", "n2", "n3"}
    live_n2 = json.loads(first.cursor)["live"]["n2"]

    redis_server.client().delete(keys.node_key("n2"))  # its heartbeat expired
    down = _tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert down.run_requests is not None
    assert len(down.run_requests) == 1
    request = down.run_requests[0]
    incident = f"producer_down:n2:{STARTED['n2']}:{live_n2['wall_ms']}"
    assert request.run_key == incident
    assert request.job_name == "restart_producer"
    assert request.tags[TAG_INCIDENT] == incident
    assert request.tags[TAG_NODES] == "n2"
    op_config = _op_config(request)
    assert op_config["node_id"] == "n2"
    assert op_config["nodes"] == ["n2"]
    assert op_config["symbols"] == ["ETHUSDT"]
    assert json.loads(op_config["detected"])[0]["kind"] == "node_down"

    again = _tick(producer_heartbeat_sensor, fleet, down.cursor)
    assert not again.run_requests
    assert again.skip_reason is not None
    assert incident in again.skip_reason.skip_message

    metadata = _diagnosis_metadata(fleet, request)
    assert metadata["nodes"].value == "n2"
    assert metadata["incident"].value == incident
    recorded = metadata["diagnosis"].value
    assert recorded["now"][0]["kind"] == "node_down"
    assert recorded["now"][0]["node"] == "n2"
    assert "Producer Node Down" in recorded["now"][0]["guide"]
    assert "node_down | n2" in metadata["report"].value

    _heartbeat(redis_server, "n2", started_ms=STARTED["n2"] + 1)  # restarted: the incident closes
    back = _tick(producer_heartbeat_sensor, fleet, again.cursor)
    assert not back.run_requests
    assert back.skip_reason is not None
    assert back.skip_reason.skip_message == "all 3 producers heartbeating"


def test_heartbeat_sensor_no_producers_at_all_is_one_run(redis_server: RedisProcess) -> None:
    fleet = _fleet(redis_server, expected_nodes=["n1"])
    first = _tick(producer_heartbeat_sensor, fleet, None)
    assert first.run_requests is not None
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key is not None
    assert request.run_key.startswith("no_active_producers:")
    assert request.job_name == "diagnose_fleet"  # every node gone: diagnose, do not restart blindly
    assert _op_config(request)["nodes"] == ["n1"]

    again = _tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert not again.run_requests
    assert again.skip_reason is not None
    assert request.run_key in again.skip_reason.skip_message

    recorded = _diagnosis_metadata(fleet, request)["diagnosis"].value
    assert recorded["now"][0]["kind"] == "no_active_producers"


def test_whole_fleet_gone_after_being_live_is_one_run_not_one_per_node(redis_server: RedisProcess) -> None:
    fleet = _fleet(redis_server)
    _healthy(redis_server)
    first = _tick(producer_heartbeat_sensor, fleet, None)
    redis_server.client().delete(*(keys.node_key(n) for n in ("n1", "n2", "n3")))
    gone = _tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert gone.run_requests is not None
    assert len(gone.run_requests) == 1
    assert _op_config(gone.run_requests[0])["nodes"] == ["n1", "n2", "n3"]
    _heartbeat(redis_server, "n1")  # one comes back: the others stay covered by the fleet incident
    partial = _tick(producer_heartbeat_sensor, fleet, gone.cursor)
    assert not partial.run_requests


def test_lease_sensor_orphaned_lease_confirmed_once(redis_server: RedisProcess) -> None:
    fleet = _fleet(redis_server)
    _healthy(redis_server)
    healthy = _tick(lease_conflict_sensor, fleet, None)
    assert healthy.skip_reason is not None
    assert healthy.skip_reason.skip_message == "all 3 symbols held by a heartbeating node"

    redis_server.client().delete(keys.node_key("n3"))  # n3 hung: its lease is still renewed
    _lease(redis_server, "SOLUSDT", "n3", token=7)
    pending = _tick(lease_conflict_sensor, fleet, healthy.cursor)
    assert not pending.run_requests
    assert pending.skip_reason is not None
    assert "orphaned_lease:SOLUSDT:n3:7" in pending.skip_reason.skip_message

    confirmed = _tick(lease_conflict_sensor, fleet, pending.cursor)
    assert confirmed.run_requests is not None
    assert [r.run_key for r in confirmed.run_requests] == ["orphaned_lease:SOLUSDT:n3:7"]
    request = confirmed.run_requests[0]
    assert _op_config(request)["symbols"] == ["SOLUSDT"]

    again = _tick(lease_conflict_sensor, fleet, confirmed.cursor)
    assert not again.run_requests

    recorded = _diagnosis_metadata(fleet, request)["diagnosis"].value
    # The holder is named by the incident, so the diagnosis also finds it down.
    found = {(f["kind"], f["node"]) for f in recorded["now"]}
    assert found == {("orphaned_lease", "n3"), ("node_down", "n3")}


def test_lease_sensor_unowned_symbol_and_stuck_lease(redis_server: RedisProcess) -> None:
    fleet = _fleet(redis_server)
    _healthy(redis_server)
    redis_server.client().delete(keys.writer_key("ETHUSDT"))
    _lease(redis_server, "SOLUSDT", "ghost", token=3, px=None)  # never expires: an incident at once
    first = _tick(lease_conflict_sensor, fleet, None)
    assert first.run_requests is not None
    assert [r.run_key for r in first.run_requests] == ["orphaned_lease:SOLUSDT:ghost:3"]
    second = _tick(lease_conflict_sensor, fleet, first.cursor)
    assert second.run_requests is not None
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key is not None
    assert second.run_requests[0].run_key.startswith("symbol_unowned:ETHUSDT:")
    third = _tick(lease_conflict_sensor, fleet, second.cursor)
    assert not third.run_requests


def test_fleet_snapshot_reads_heartbeats_leases_and_time(redis_server: RedisProcess) -> None:
    _healthy(redis_server)
    snapshot = _fleet(redis_server).snapshot()
    assert set(snapshot.heartbeats) == {"n1", "n2", "n3"}
    assert all(0 < pttl <= 5000 for pttl in snapshot.heartbeat_pttl_ms.values())
    assert {s: lease.holder for s, lease in snapshot.leases.items()} == {
        "BTCUSDT": "n1",
        "ETHUSDT": "n2",
        "SOLUSDT": "n3",
    }
    assert snapshot.leases["BTCUSDT"].token == 1
    assert abs(snapshot.redis_time_ms - _redis_ms(redis_server)) < 5000


def test_sensors_skip_with_a_clear_reason_when_redis_is_unreachable():
    from assets.resources import RedisResource
    from sensors.heartbeat import producer_heartbeat_sensor
    from sensors.leases import lease_conflict_sensor
    from sensors.resources import FleetResource
    from tests.conftest import free_port

    fleet = FleetResource(redis=RedisResource(url=f"redis://127.0.0.1:{free_port()}/0"), symbols=["BTCUSDT"])
    for sensor in (producer_heartbeat_sensor, lease_conflict_sensor):
        with dg.build_sensor_context(cursor="kept", resources={"fleet": fleet}) as context:
            result = sensor(context)
        assert not result.run_requests
        assert "cannot read the fleet from Redis" in result.skip_reason.skip_message
        assert result.cursor == "kept", "an outage must not forget open incidents"
