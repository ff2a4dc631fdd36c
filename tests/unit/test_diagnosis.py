"""Fleet diagnosis from hand-made snapshots (ntplatform/diagnosis.py)."""

from __future__ import annotations

from typing import Any

from ntplatform.diagnosis import FleetSnapshot, LatestReport, WriterLease, clock_skew_ms, diagnose

NOW = 1_796_322_401_200


def heartbeat(node: str, *, wall_ms: int = NOW, owned: tuple[str, ...] = (), **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node_id": node,
        "pid": 100,
        "host": "vm",
        "started_ms": NOW - 60_000,
        "wall_ms": wall_ms,
        "owned_symbols": list(owned),
        "fencing_tokens": dict.fromkeys(owned, 1),
        "config_fingerprint": "825beeca6c66",
        "lease_ttl_ms": 2000,
        "min_hold_ms": 2000,
        "heartbeat_interval_ms": 1000,
        "rebalance_interval_sec": 2.5,
        "metrics_port": 9101,
    }
    body.update(over)
    return body


def healthy_snapshot(**over: Any) -> FleetSnapshot:
    fields: dict[str, Any] = {
        "redis_time_ms": NOW,
        "heartbeats": {
            "n1": heartbeat("n1", owned=("BTCUSDT",)),
            "n2": heartbeat("n2", owned=("ETHUSDT",)),
        },
        "heartbeat_pttl_ms": {"n1": 5000, "n2": 5000},
        "leases": {
            "BTCUSDT": WriterLease("BTCUSDT", "n1", 1500, 3),
            "ETHUSDT": WriterLease("ETHUSDT", "n2", 1500, 4),
        },
        "symbols": ("BTCUSDT", "ETHUSDT"),
    }
    fields.update(over)
    return FleetSnapshot(**fields)


def test_healthy_fleet_has_no_findings() -> None:
    result = diagnose(healthy_snapshot(), expected_nodes=["n1", "n2"])
    assert result.healthy
    assert result.live_nodes == ["n1", "n2"]
    assert result.clock_skew_ms == {"n1": 0, "n2": 0}
    assert result.owners == {"BTCUSDT": "n1", "ETHUSDT": "n2"}
    assert "healthy" in result.to_markdown()


def test_missing_node_orphaned_lease_and_unowned_symbol() -> None:
    snapshot = healthy_snapshot(
        heartbeats={"n2": heartbeat("n2", owned=("ETHUSDT",))},
        leases={"BTCUSDT": WriterLease("BTCUSDT", "n1", 800, 3)},
        symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
    )
    result = diagnose(snapshot, expected_nodes=["n1", "n2"])
    kinds = {(f.kind, f.subject) for f in result.findings}
    assert kinds == {
        ("node_down", "n1"),
        ("orphaned_lease", "BTCUSDT"),
        ("symbol_unowned", "ETHUSDT"),
        ("symbol_unowned", "SOLUSDT"),
    }
    orphan = result.of_kind("orphaned_lease")[0]
    assert orphan.node == "n1"
    assert orphan.data == {"pttl_ms": 800, "token": 3}
    assert "Lease Conflicts" in orphan.guide
    assert result.of_kind("node_down")[0].guide.startswith("4. Producer Node Down; ")
    assert "node_down | n1" in result.to_markdown()


def test_no_heartbeat_at_all_is_one_fleet_finding() -> None:
    result = diagnose(healthy_snapshot(heartbeats={}, leases={}), expected_nodes=["n1", "n2"])
    fleet = result.of_kind("no_active_producers")
    assert len(fleet) == 1
    assert fleet[0].data == {"missing_nodes": ["n1", "n2"]}
    assert not result.of_kind("node_down")
    assert {f.subject for f in result.of_kind("symbol_unowned")} == {"BTCUSDT", "ETHUSDT"}


def test_clock_skew_uses_heartbeat_age_from_pttl() -> None:
    # Written 1 s ago (TTL 5000, PTTL 4000) with the node's clock 250 ms ahead of Redis.
    body = heartbeat("n1", wall_ms=NOW - 1000 + 250)
    assert clock_skew_ms(body, NOW, 4000) == 250
    # Without the PTTL the age is unknown and the estimate is biased low by the age.
    assert clock_skew_ms(body, NOW, None) == -750
    snapshot = healthy_snapshot(
        heartbeats={"n1": body, "n2": heartbeat("n2", wall_ms=NOW - 40)},
        heartbeat_pttl_ms={"n1": 4000, "n2": 5000},
    )
    result = diagnose(snapshot)
    assert result.clock_skew_ms == {"n1": 250, "n2": -40}
    skew = result.of_kind("clock_skew")
    assert [f.subject for f in skew] == ["n1"]
    assert "ahead of Redis by 250 ms" in skew[0].detail
    assert skew[0].data == {"skew_ms": 250, "age_known": True}


def test_lease_setting_mismatch_names_the_odd_node() -> None:
    snapshot = healthy_snapshot(
        heartbeats={
            "n1": heartbeat("n1", owned=("BTCUSDT",)),
            "n2": heartbeat("n2", owned=("ETHUSDT",)),
            "n3": heartbeat("n3", lease_ttl_ms=3000, config_fingerprint="ffffffffffff"),
        },
        heartbeat_pttl_ms={},
    )
    result = diagnose(snapshot)
    mismatch = result.of_kind("lease_config_mismatch")
    assert {(f.subject, f.data["setting"]) for f in mismatch} == {
        ("n3", "lease_ttl_ms"),
        ("n3", "config_fingerprint"),
    }
    assert "2.C" in mismatch[0].guide


def test_health_unreachable_or_degraded() -> None:
    snapshot = healthy_snapshot(health={"n1": None, "n2": {"status": "degraded"}})
    found = {(f.subject, f.data["status"]) for f in diagnose(snapshot).of_kind("node_unhealthy")}
    assert found == {("n1", "unreachable"), ("n2", "degraded")}


def test_two_processes_with_one_node_id_are_named_from_health() -> None:
    health = {"n2": {"status": "degraded", "coordination": {"duplicate_node_id": True}}}
    result = diagnose(healthy_snapshot(health=health))
    (duplicate,) = result.of_kind("duplicate_node_id")
    assert (duplicate.subject, duplicate.node) == ("n2", "n2")
    assert "NT_NODE_ID" in duplicate.remediation
    assert [f.subject for f in result.of_kind("node_unhealthy")] == ["n2"]


def test_silent_writer_is_stale_unless_its_health_shows_snapshots_rate_limited() -> None:
    reports = {
        "BTCUSDT": LatestReport("BTCUSDT", "n1", 41, 30, NOW - 100),
        "ETHUSDT": LatestReport("ETHUSDT", "n2", 17, 30, NOW - 9_000),  # n2 stopped writing it
    }
    assert [f.subject for f in diagnose(healthy_snapshot(reports=reports)).of_kind("symbol_stale")] == [
        "ETHUSDT"
    ]
    limited = {"ETHUSDT": {"book_synced": False, "snapshot_failures": 2, "rate_limited": True}}
    limited["ETHUSDT"]["snapshot_retry_ms"] = NOW + 20_400
    health = {"n1": {"status": "ok", "symbols": {}}, "n2": {"status": "degraded", "symbols": limited}}
    result = diagnose(healthy_snapshot(reports=reports, health=health))
    assert result.of_kind("symbol_stale") == []
    (finding,) = result.of_kind("symbol_rate_limited")
    assert (finding.subject, finding.node) == ("ETHUSDT", "n2")
    assert finding.detail == (
        "no report for 9000 ms although n2 holds the lease: n2's order-book snapshot requests are "
        "refused by the exchange's rate limit (HTTP 429/418, code -1003; 2 failed in a row, next in 20 s)"
    )
    assert "resubscribe or restart only adds requests" in finding.remediation
    # n2 is degraded only because of it: waiting, not restarting, is the advice there too.
    health["n2"]["coordination"] = {"owned_symbols": ["ETHUSDT"]}
    (unhealthy,) = diagnose(healthy_snapshot(reports=reports, health=health)).of_kind("node_unhealthy")
    assert unhealthy.detail == (
        "/health status degraded: ETHUSDT book waits on rate-limited snapshots (2 failed in a row, "
        "next in 20 s)"
    )
    assert unhealthy.remediation.startswith("wait: it resyncs by itself")
    assert unhealthy.guide.startswith("7.A Exchange API Issues")


def test_every_guide_reference_names_a_section_of_the_projects_runbook() -> None:
    import re
    from pathlib import Path

    from ntplatform import churn, diagnosis

    runbook = Path(__file__).resolve().parents[2] / diagnosis.RUNBOOK
    headings = re.findall(r"^## (.+)$", runbook.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    guides = [v for m in (diagnosis, churn) for k, v in vars(m).items() if k.startswith("GUIDE_")]
    assert len(guides) == 9
    for guide in guides:
        section, reference = guide.split("; ")
        assert re.match(r"^\d\.[A-Z]? ?[A-Z]", section), guide
        path, anchor = reference.split("#")
        assert path == diagnosis.RUNBOOK
        assert anchor in anchors, f"{guide}: no section #{anchor} in {path}"
