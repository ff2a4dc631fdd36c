"""``release_orphaned_leases`` and ``force_rebalance`` against two real producers.

A lease that names a node without heartbeat and never expires (left by a crashed tool, or a
node whose key was deleted) blocks its symbol for good: no live node can acquire it. The
lease sensor raises it at once; the job releases it, sends a signed rebalance and waits until
a live node publishes the symbol with fresh data.
"""

from __future__ import annotations

import dagster as dg
import pytest

from assets.resources import RedisResource
from sensors.leases import lease_conflict_sensor
from sensors.resources import ControlResource, FleetResource
from sensors.symbol_remediation import force_rebalance, release_orphaned_leases
from tests.conftest import wait_for
from tests.integration.fleet import SYMBOLS, Fleet

pytestmark = pytest.mark.integration
SECRET = "remediation test secret value"  # noqa: S105 - the test's own


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    return {k: getattr(v, "value", v) for k, v in output.step_output_data.metadata.items()}


def test_stuck_lease_released_and_symbol_back_then_forced_rebalance(processes, tmp_path, redis_server):
    fleet = Fleet(processes, tmp_path, redis_server.url)
    nodes = [fleet.start(1, NT_CONTROL_SECRET=SECRET), fleet.start(2, NT_CONTROL_SECRET=SECRET)]
    wait_for(
        lambda: fleet.balanced(nodes) and len(fleet.fresh_writers()) == len(SYMBOLS), 120, "a balanced fleet"
    )
    redis_resource = RedisResource(url=redis_server.url)
    resources = {
        "fleet": FleetResource(redis=redis_resource, symbols=list(SYMBOLS)),
        "control_channel": ControlResource(redis=redis_resource, secret=SECRET),
    }

    symbol = "SOLUSDT"
    fleet.client.set(f"report:writer:{symbol}", "producer-node-009")  # no TTL, no such node
    wait_for(lambda: symbol not in fleet.fresh_writers(), 30, f"{symbol} to stop being published")
    with dg.build_sensor_context(resources={"fleet": resources["fleet"]}) as context:
        tick = lease_conflict_sensor(context)
    (request,) = tick.run_requests
    assert request.job_name == "release_orphaned_leases"
    assert request.run_key.startswith(f"orphaned_lease:{symbol}:producer-node-009:")

    result = release_orphaned_leases.execute_in_process(
        run_config=request.run_config, tags=request.tags, resources=resources
    )
    assert result.success
    metadata = _metadata(result)
    assert metadata["outcome"] == "recovered"
    released = metadata["remediation"]["released"]
    assert released == [
        {"symbol": symbol, "holder": "producer-node-009", "token": released[0]["token"], "result": "released"}
    ]
    acks = metadata["remediation"]["rebalance_acks"]
    assert sorted(a["node_id"] for a in acks if a["outcome"] == "accepted") == nodes
    assert fleet.owners()[symbol] in nodes
    assert symbol in fleet.fresh_writers()

    # force_rebalance on a healthy fleet: every node recomputes ownership at once, nothing breaks.
    forced = force_rebalance.execute_in_process(
        run_config={
            "ops": {
                "force_rebalance_op": {
                    "config": {"incident": "manual", "trigger": "test", "symbols": ["BTCUSDT"]}
                }
            }
        },
        resources=resources,
    )
    assert forced.success
    assert _metadata(forced)["outcome"] == "recovered"
    for node in nodes:
        assert fleet.events(node, "control_command_accepted")
    assert fleet.fencing_violations() == []
