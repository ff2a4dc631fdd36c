"""Several real producer nodes share the symbols: one writer each, fast failover, fencing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import RedisProcess, wait_for
from tests.integration.fleet import SYMBOLS, Fleet

pytestmark = pytest.mark.integration
NODES = ["producer-node-001", "producer-node-002", "producer-node-003"]


@pytest.fixture
def fleet(redis_server, processes, tmp_path):
    return Fleet(processes, tmp_path, redis_server.url)


def _start_three(fleet: Fleet, **env: str) -> None:
    for index in (1, 2, 3):
        fleet.start(index, **env)
    wait_for(lambda: fleet.balanced(NODES), 90, "three nodes sharing six symbols")


def test_three_nodes_share_symbols_then_survive_sigterm_and_kill(fleet):
    _start_three(fleet)
    assert sorted(fleet.loads().values()) == [2, 2, 2]
    for node in NODES:
        health = fleet.metric(node, "nt_symbols_assigned")
        assert health == 2

    # SIGTERM: the node hands its leases over and leaves; peers take over at once.
    victim = "producer-node-002"
    victim_symbols = [s for s, o in fleet.owners().items() if o == victim]
    assert fleet.nodes[victim].stop(signal.SIGTERM) == 0
    survivors = [n for n in NODES if n != victim]
    wait_for(lambda: fleet.balanced(survivors), 30, "survivors to take over after SIGTERM")
    for symbol in victim_symbols:
        gap = fleet.handoff_gap_s(symbol, victim, fleet.owners()[symbol])
        print(f"SIGTERM hand-off gap {symbol}: {gap:.3f} s")
        assert gap < 5.0
    assert fleet.client.get(f"nt:node:{victim}") is None, "a stopped node deletes its heartbeat"

    # kill -9: nothing is handed over; the heartbeat and leases must expire first.
    victim = "producer-node-003"
    fleet.nodes[victim].process.kill()
    fleet.nodes[victim].process.wait()
    wait_for(lambda: fleet.balanced(["producer-node-001"]), 60, "the last node to take over after kill -9")
    assert fleet.fencing_violations() == []
    rebalances = fleet.events("producer-node-001", "rebalancing_triggered")
    assert {e["reason"] for e in rebalances} >= {"peer_leave"}


def test_frozen_node_writes_nothing_after_resuming_and_rejoins(fleet):
    _start_three(fleet)
    victim = "producer-node-001"
    process = fleet.nodes[victim].process
    process.send_signal(signal.SIGSTOP)
    try:
        # Longer than the lease (2 s) and the heartbeat TTL (5 s): peers take over.
        survivors = [n for n in NODES if n != victim]
        wait_for(lambda: fleet.balanced(survivors), 60, "peers to take over from the frozen node")
    finally:
        process.send_signal(signal.SIGCONT)
    wait_for(lambda: fleet.balanced(NODES), 60, "the resumed node to rejoin")
    assert fleet.fencing_violations() == [], "a write from before the freeze landed after the takeover"
    conflicts = fleet.events(victim, "lease_conflict") + fleet.events(victim, "lease_expired")
    assert conflicts, "the resumed node must notice it lost its leases"
    assert all(e.get("reason", "fencing_token_mismatch") == "fencing_token_mismatch" for e in conflicts)


def test_skewed_clock_and_a_fourth_node_move_little_and_never_double_write(fleet):
    fleet.start(1)
    fleet.start(2)
    fleet.start(3, NT_CLOCK_OFFSET_MS="10000")
    wait_for(lambda: fleet.balanced(NODES), 90, "three nodes, one 10 s ahead")
    before = fleet.owners()
    rebalances_before = sum(fleet.metric(n, "nt_hrw_rebalances_total") for n in NODES)

    newcomer = fleet.start(4)
    everyone = [*NODES, newcomer]
    wait_for(lambda: fleet.balanced(everyone), 60, "the fourth node to take its share")
    after = fleet.owners()
    moved = {s for s in SYMBOLS if before[s] != after[s]}
    print(f"fourth node: moved {sorted(moved)}")
    assert 1 <= len(moved) <= 2  # a quarter of six
    assert all(after[s] == newcomer for s in moved), "symbols move only to the newcomer"

    # Nothing changes while nobody joins or leaves: no flapping, whatever the clocks say.
    settled = fleet.owners()
    time.sleep(6)  # more than two rebalance intervals
    assert fleet.owners() == settled
    rebalances_after = sum(fleet.metric(n, "nt_hrw_rebalances_total") for n in NODES)
    assert rebalances_after - rebalances_before <= len(moved) * 2
    assert fleet.fencing_violations() == []


def test_redis_restart_rebuilds_heartbeats_and_leases_without_double_writers(fleet, redis_server, tmp_path):
    _start_three(fleet)
    port = redis_server.port
    # The owners' report seqs as their heartbeats announce them; once every node has heartbeated
    # (and so read its peers') twice more, each knows at least these.
    beats = fleet.heartbeats()
    announced = {s: seq for beat in beats.values() for s, seq in beat["report_seqs"].items()}
    assert sorted(announced) == list(SYMBOLS), beats
    wait_for(
        lambda: all(b.get("wall_ms", 0) >= beats[n]["wall_ms"] + 2000 for n, b in fleet.heartbeats().items()),
        30,
        "every node to heartbeat twice more",
    )
    redis_server.stop()
    replacement = RedisProcess(tmp_path, port=port)
    replacement.start()
    try:
        wait_for(lambda: fleet.balanced(NODES), 60, "the fleet to rebuild on an empty Redis")
        assert sorted(k.decode() for k in fleet.client.keys("nt:node:*")) == [f"nt:node:{n}" for n in NODES]
        assert fleet.fencing_violations() == []
        for node in NODES:
            assert fleet.events(node, "redis_recovered")
        # Tokens never go back to 1: each node acquires above the highest token it had seen.
        tokens = {s: int(fleet.client.get(f"report:writer:token:{s}")) for s in SYMBOLS}
        assert all(token >= 2 for token in tokens.values()), tokens
        # Nor do report seqs start again at 1: writers go on from their own last seq and the ones
        # their peers announced, so a symbol that changed owner goes back at most a heartbeat's worth.
        seq_after = {s: min(r["seq"] for _, r in fleet.stream(s)) for s in SYMBOLS}
        assert all(seq_after[s] > announced[s] for s in SYMBOLS), (announced, seq_after)
    finally:
        replacement.stop()


def test_mismatched_lease_settings_are_logged_and_shown_in_health(fleet):
    import json
    import urllib.error
    import urllib.request

    fleet.start(1)
    odd = fleet.start(2, NT_LEASE_TTL_MS="3000")
    pair = ["producer-node-001", odd]
    wait_for(lambda: fleet.balanced(pair), 90, "two nodes sharing the symbols")
    wait_for(lambda: fleet.events("producer-node-001", "configuration_mismatch"), 30, "a mismatch warning")

    warning = fleet.events("producer-node-001", "configuration_mismatch")[0]
    assert warning["peer"] == odd
    assert warning["peer_lease_ttl_ms"] == 3000
    assert warning["lease_ttl_ms"] == 2000
    assert fleet.metric("producer-node-001", "nt_config_mismatch_nodes") == 1
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{fleet.ports['producer-node-001']}/health", timeout=5)
    health = json.loads(caught.value.read())
    assert health["status"] == "degraded"
    assert health["coordination"]["mismatched_nodes"] == [odd]
    assert health["coordination"]["live_nodes"] == pair


def test_a_second_process_with_a_nodes_id_is_named_but_a_restarted_node_is_not(fleet):
    import json
    import urllib.error
    import urllib.request

    fleet.start(1)
    restarted = fleet.start(2)
    pair = ["producer-node-001", restarted]
    wait_for(lambda: fleet.balanced(pair), 90, "two nodes sharing the symbols")
    # Killed and started again at once: its old heartbeat is still in Redis, and that is normal.
    fleet.nodes[restarted].process.kill()
    fleet.nodes[restarted].process.wait(timeout=30)
    fleet.start(2)
    wait_for(lambda: fleet.balanced(pair), 90, "the restarted node to take its share again")
    assert fleet.events(restarted, "duplicate_node_id") == []

    node = "producer-node-001"
    original, original_port = fleet.nodes[node], fleet.ports[node]
    fleet.start(1)  # the same NT_NODE_ID again, as if an environment was copied
    copy, copy_port = fleet.nodes[node], fleet.ports[node]
    wait_for(lambda: fleet.events(node, "duplicate_node_id"), 60, "a duplicate_node_id error")

    reporters = 0
    for process, port, other in ((original, original_port, copy), (copy, copy_port, original)):
        events = [
            json.loads(line)
            for line in process.output().splitlines()
            if '"event":"duplicate_node_id"' in line
        ]
        if not events:
            continue
        reporters += 1
        (event,) = events  # once per other process, not once per heartbeat
        assert event["level"] == "error"
        assert event["other_pid"] == other.process.pid
        assert "NT_NODE_ID" in event["hint"]
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        health = json.loads(caught.value.read())
        assert health["status"] == "degraded"
        assert health["coordination"]["duplicate_node_id"] is True
    assert reporters >= 1
    assert copy.stop(signal.SIGTERM) == 0
