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
from tests.integration.fleet_state import (
    STARTED,
    fleet_of,
    healthy,
    heartbeat,
    lease,
    op_config,
    redis_ms,
    tick,
)

pytestmark = pytest.mark.integration


def _diagnosis_metadata(fleet: FleetResource, request: dg.RunRequest) -> dict[str, Any]:
    """What ``diagnose_fleet`` records for the incident of ``request`` (whichever job it launches)."""
    config = {k: v for k, v in op_config(request).items() if k in DiagnoseConfig.model_fields}
    result = diagnose_fleet.execute_in_process(
        run_config={"ops": {OP_NAME: {"config": config}}}, tags=request.tags, resources={"fleet": fleet}
    )
    assert result.success
    outputs = [e for e in result.all_node_events if e.is_successful_output]
    assert len(outputs) == 1
    return dict(outputs[0].step_output_data.metadata)


def test_heartbeat_sensor_healthy_down_duplicate_and_recovery(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    healthy(redis_server)
    first = tick(producer_heartbeat_sensor, fleet, None)
    assert not first.run_requests
    assert first.skip_reason is not None
    assert first.skip_reason.skip_message == "all 3 producers heartbeating"
    assert first.cursor is not None
    assert set(json.loads(first.cursor)["live"]) == {"n1", "n2", "n3"}
    live_n2 = json.loads(first.cursor)["live"]["n2"]

    redis_server.client().delete(keys.node_key("n2"))  # its heartbeat expired
    down = tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert down.run_requests is not None
    assert len(down.run_requests) == 1
    request = down.run_requests[0]
    incident = f"producer_down:n2:{STARTED['n2']}:{live_n2['wall_ms']}"
    assert request.run_key == incident
    assert request.job_name == "restart_producer"
    assert request.tags[TAG_INCIDENT] == incident
    assert request.tags[TAG_NODES] == "n2"
    config = op_config(request)
    assert config["node_id"] == "n2"
    assert config["nodes"] == ["n2"]
    assert config["symbols"] == ["ETHUSDT"]
    assert json.loads(config["detected"])[0]["kind"] == "node_down"

    again = tick(producer_heartbeat_sensor, fleet, down.cursor)
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

    heartbeat(redis_server, "n2", started_ms=STARTED["n2"] + 1)  # restarted: the incident closes
    back = tick(producer_heartbeat_sensor, fleet, again.cursor)
    assert not back.run_requests
    assert back.skip_reason is not None
    assert back.skip_reason.skip_message == "all 3 producers heartbeating"


def test_node_not_expected_and_down_for_ten_minutes_is_no_longer_watched(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server, expected_nodes=["n1", "n2"])
    healthy(redis_server)
    first = tick(producer_heartbeat_sensor, fleet, None)
    redis_server.client().delete(keys.node_key("n2"), keys.node_key("n3"))  # n3: started by hand, stopped
    down = tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert down.run_requests is not None
    assert sorted(op_config(r)["node_id"] for r in down.run_requests) == ["n2", "n3"]

    # Ten minutes later (the incidents' start moved back): n3 is let go, n2 (expected) is not.
    assert down.cursor is not None
    cursor = json.loads(down.cursor)
    for incident in cursor["incidents"].values():
        incident["since_ms"] -= 10 * 60 * 1000
    later = tick(producer_heartbeat_sensor, fleet, json.dumps(cursor))
    assert not later.run_requests
    assert later.skip_reason is not None
    assert later.skip_reason.skip_message.startswith(
        "1 producers heartbeating; no longer watching n3: down for 10 min and not in NT_EXPECTED_NODES "
        "(add it there to keep watching); still down, run already requested: n2 (producer_down:n2:"
    )
    assert later.cursor is not None
    assert set(json.loads(later.cursor)["incidents"]) == {"n2"}
    after = tick(producer_heartbeat_sensor, fleet, later.cursor)
    assert not after.run_requests  # n3 is not taken for a new incident
    assert after.skip_reason is not None
    assert "still down, run already requested: n2" in after.skip_reason.skip_message


def test_heartbeat_sensor_no_producers_at_all_is_one_run(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server, expected_nodes=["n1"])
    first = tick(producer_heartbeat_sensor, fleet, None)
    assert first.run_requests is not None
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key is not None
    assert request.run_key.startswith("no_active_producers:")
    assert request.job_name == "diagnose_fleet"  # every node gone: diagnose, do not restart blindly
    assert op_config(request)["nodes"] == ["n1"]

    again = tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert not again.run_requests
    assert again.skip_reason is not None
    assert request.run_key in again.skip_reason.skip_message

    recorded = _diagnosis_metadata(fleet, request)["diagnosis"].value
    assert recorded["now"][0]["kind"] == "no_active_producers"


def test_whole_fleet_gone_after_being_live_is_one_run_not_one_per_node(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    healthy(redis_server)
    first = tick(producer_heartbeat_sensor, fleet, None)
    redis_server.client().delete(*(keys.node_key(n) for n in ("n1", "n2", "n3")))
    gone = tick(producer_heartbeat_sensor, fleet, first.cursor)
    assert gone.run_requests is not None
    assert len(gone.run_requests) == 1
    assert op_config(gone.run_requests[0])["nodes"] == ["n1", "n2", "n3"]
    heartbeat(redis_server, "n1")  # one comes back: the others stay covered by the fleet incident
    partial = tick(producer_heartbeat_sensor, fleet, gone.cursor)
    assert not partial.run_requests


def test_lease_sensor_orphaned_lease_confirmed_once(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    healthy(redis_server)
    quiet = tick(lease_conflict_sensor, fleet, None)
    assert quiet.skip_reason is not None
    assert quiet.skip_reason.skip_message == "all 3 symbols held by a heartbeating node"

    redis_server.client().delete(keys.node_key("n3"))  # n3 hung: its lease is still renewed
    lease(redis_server, "SOLUSDT", "n3", token=7)
    pending = tick(lease_conflict_sensor, fleet, quiet.cursor)
    assert not pending.run_requests
    assert pending.skip_reason is not None
    assert "orphaned_lease:SOLUSDT:n3:7" in pending.skip_reason.skip_message

    confirmed = tick(lease_conflict_sensor, fleet, pending.cursor)
    assert confirmed.run_requests is not None
    assert [r.run_key for r in confirmed.run_requests] == ["orphaned_lease:SOLUSDT:n3:7"]
    request = confirmed.run_requests[0]
    assert request.job_name == "release_orphaned_leases"
    assert op_config(request)["symbols"] == ["SOLUSDT"]

    again = tick(lease_conflict_sensor, fleet, confirmed.cursor)
    assert not again.run_requests

    recorded = _diagnosis_metadata(fleet, request)["diagnosis"].value
    # The holder is named by the incident, so the diagnosis also finds it down.
    found = {(f["kind"], f["node"]) for f in recorded["now"]}
    assert found == {("orphaned_lease", "n3"), ("node_down", "n3")}


def test_lease_sensor_unowned_symbol_and_stucklease(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    healthy(redis_server)
    redis_server.client().delete(keys.writer_key("ETHUSDT"))
    lease(redis_server, "SOLUSDT", "ghost", token=3, px=None)  # never expires: an incident at once
    first = tick(lease_conflict_sensor, fleet, None)
    assert first.run_requests is not None
    assert [r.run_key for r in first.run_requests] == ["orphaned_lease:SOLUSDT:ghost:3"]
    second = tick(lease_conflict_sensor, fleet, first.cursor)
    assert second.run_requests is not None
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key is not None
    assert second.run_requests[0].run_key.startswith("symbol_unowned:ETHUSDT:")
    assert second.run_requests[0].job_name == "force_rebalance"
    assert first.run_requests[0].job_name == "release_orphaned_leases"
    third = tick(lease_conflict_sensor, fleet, second.cursor)
    assert not third.run_requests


def test_fleet_snapshot_reads_heartbeats_leases_and_time(redis_server: RedisProcess) -> None:
    healthy(redis_server)
    snapshot = fleet_of(redis_server).snapshot()
    assert set(snapshot.heartbeats) == {"n1", "n2", "n3"}
    assert all(0 < pttl <= 5000 for pttl in snapshot.heartbeat_pttl_ms.values())
    assert {s: lease.holder for s, lease in snapshot.leases.items()} == {
        "BTCUSDT": "n1",
        "ETHUSDT": "n2",
        "SOLUSDT": "n3",
    }
    assert snapshot.leases["BTCUSDT"].token == 1
    assert abs(snapshot.redis_time_ms - redis_ms(redis_server)) < 5000


def test_sensors_skip_with_a_clear_reason_when_redis_is_unreachable():
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
