"""Fleet diagnosis in the troubleshooting guide's terms: pure, no Dagster, no I/O.

Input is a :class:`FleetSnapshot` (what one read of Redis shows: every ``nt:node:*``
heartbeat, every ``report:writer:{SYMBOL}`` holder with its PTTL and token, Redis's own
clock); output is a :class:`Diagnosis`, a list of :class:`Finding` each naming the node or
symbol, what was seen, the guide section it belongs to and the suggested remediation.

Clock skew estimate: a node writes ``wall_ms`` (its own clock) into its heartbeat and sets
the key with TTL ``5 × heartbeat_interval_ms``. At the read, Redis time is ``redis_time_ms``
and the key's remaining PTTL is known, so the heartbeat's age is ``ttl - pttl`` and the
Redis time at which it was written is about ``redis_time_ms - age``. The skew is
``wall_ms - (redis_time_ms - age)``: positive means the node's clock runs ahead of Redis.
Error bound: the node's round trip to Redis plus PTTL's millisecond rounding (a few ms on a
healthy network). Without the PTTL the age is unknown and the estimate is
``wall_ms - redis_time_ms``, biased low by up to one heartbeat interval; the finding then
says so (``age_known: false``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ntplatform import node_health

HEARTBEAT_TTL_FACTOR = 5  # heartbeat key TTL = 5 × NT_HEARTBEAT_INTERVAL_MS (docs/coordination.md)
MAX_CLOCK_SKEW_MS = 100  # guide section 2.A: "should be < 100ms"
LEASE_SETTINGS = ("lease_ttl_ms", "min_hold_ms", "config_fingerprint")

# Where a finding is explained: the troubleshooting guide's section (its numbering), then the
# section of this project's runbook, docs/runbooks/troubleshooting.md (tests check the anchors).
RUNBOOK = "docs/runbooks/troubleshooting.md"
GUIDE_NODE_DOWN = f"4. Producer Node Down; {RUNBOOK}#producer-down"
GUIDE_LEASE_CONFLICTS = f"2. Lease Conflicts; {RUNBOOK}#lease-conflicts"
GUIDE_CLOCK_SKEW = f"2.A Clock Skew Between Nodes; {RUNBOOK}#lease-conflicts"
GUIDE_CONFIG = f"2.C Incorrect Configuration; {RUNBOOK}#configuration-mismatch"
GUIDE_HUNG = f"4.C Deadlock or Hung Process; {RUNBOOK}#producer-down"
GUIDE_STALE = f"1. Market Data Stale; {RUNBOOK}#market-data-stale"
GUIDE_RATE_LIMITED = f"7.A Exchange API Issues; {RUNBOOK}#market-data-stale"

STALE_AFTER_MS = 5000  # MarketDataCritical: data older than this, or no report for this long


@dataclass(frozen=True)
class WriterLease:
    """One ``report:writer:{SYMBOL}``: its holder, remaining PTTL (-1: no expiry) and token."""

    symbol: str
    holder: str
    pttl_ms: int
    token: int | None = None


@dataclass(frozen=True)
class LatestReport:
    """The newest report of a symbol: who wrote it, how old its data was, when it was written.

    ``written_ms`` is Redis's clock (the stream entry id), so node clock skew does not matter;
    None when only ``report:{SYMBOL}`` exists (streams disabled).
    """

    symbol: str
    node_id: str | None
    seq: int | None
    data_age_ms: int | None
    written_ms: int | None


@dataclass(frozen=True)
class FleetSnapshot:
    """What one read of Redis shows about the fleet."""

    redis_time_ms: int
    heartbeats: Mapping[str, Mapping[str, Any]]  # node id -> heartbeat payload
    leases: Mapping[str, WriterLease]  # symbol -> current writer
    symbols: Sequence[str] = ()  # the configured symbols (a symbol also counts if it has a writer)
    heartbeat_pttl_ms: Mapping[str, int] = field(default_factory=dict)  # node id -> key PTTL
    health: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)  # None: unreachable
    read_latency_ms: float | None = None
    reports: Mapping[str, LatestReport] = field(default_factory=dict)  # symbol -> newest report

    def all_symbols(self) -> list[str]:
        return sorted(set(self.symbols) | set(self.leases))


@dataclass(frozen=True)
class Finding:
    """One thing wrong, in the guide's terms."""

    kind: str  # node_down | no_active_producers | symbol_unowned | orphaned_lease | clock_skew | ...
    subject: str  # the node id or symbol it is about ("fleet" for fleet-wide findings)
    detail: str
    remediation: str
    guide: str
    node: str | None = None
    symbol: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnosis:
    """The findings plus the per-node facts they were derived from."""

    redis_time_ms: int
    live_nodes: list[str]
    findings: list[Finding]
    clock_skew_ms: dict[str, int]
    owners: dict[str, str]
    redis_latency_ms: float | None = None  # one TIME round trip from where the diagnosis ran

    @property
    def healthy(self) -> bool:
        return not self.findings

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"**Live nodes** ({len(self.live_nodes)}): {', '.join(self.live_nodes) or 'none'}",
            f"**Redis round trip**: {self.redis_latency_ms} ms",
            "",
        ]
        if not self.findings:
            return "\n".join([*lines, "No findings: the fleet looks healthy."])
        lines += ["| kind | subject | detail | guide | remediation |", "|---|---|---|---|---|"]
        for f in self.findings:
            lines.append(f"| {f.kind} | {f.subject} | {f.detail} | {f.guide} | {f.remediation} |")
        return "\n".join(lines)

    def summary(self) -> str:
        if not self.findings:
            return f"healthy: {len(self.live_nodes)} live nodes"
        return "; ".join(f"{f.kind} {f.subject}: {f.detail}" for f in self.findings)


def heartbeat_age_ms(payload: Mapping[str, Any], pttl_ms: int | None) -> int | None:
    """Age of a heartbeat from its key's remaining PTTL, or None when unknown."""
    interval = payload.get("heartbeat_interval_ms")
    if pttl_ms is None or pttl_ms < 0 or not isinstance(interval, int):
        return None
    return max(0, HEARTBEAT_TTL_FACTOR * interval - pttl_ms)


def clock_skew_ms(payload: Mapping[str, Any], redis_time_ms: int, pttl_ms: int | None) -> int | None:
    """The node's clock minus Redis's at the moment it wrote the heartbeat (module docstring)."""
    wall = payload.get("wall_ms")
    if not isinstance(wall, int):
        return None
    age = heartbeat_age_ms(payload, pttl_ms) or 0
    return wall - (redis_time_ms - age)


def _node_down(snapshot: FleetSnapshot, expected_nodes: Sequence[str]) -> list[Finding]:
    if not snapshot.heartbeats:
        missing = sorted(expected_nodes)
        return [
            Finding(
                kind="no_active_producers",
                subject="fleet",
                detail="no nt:node:* heartbeat in Redis"
                + (f" (expected {', '.join(missing)})" if missing else ""),
                remediation="start or restart the producers (process crashed, exited or hung); "
                "check their logs and exit codes",
                guide=GUIDE_NODE_DOWN,
                data={"missing_nodes": missing},
            )
        ]
    return [
        Finding(
            kind="node_down",
            subject=node,
            detail=f"no heartbeat nt:node:{node} (expired or deleted)",
            remediation="check whether the process crashed, exited or is hung (SIGSTOP, deadlock); "
            "restart it",
            guide=GUIDE_NODE_DOWN,
            node=node,
        )
        for node in sorted(set(expected_nodes) - set(snapshot.heartbeats))
    ]


def _leases(snapshot: FleetSnapshot) -> list[Finding]:
    found = []
    for symbol in snapshot.all_symbols():
        lease = snapshot.leases.get(symbol)
        if lease is None:
            found.append(
                Finding(
                    kind="symbol_unowned",
                    subject=symbol,
                    detail=f"report:writer:{symbol} is not held: nobody publishes {symbol}",
                    remediation="force a rebalance; if no node is live, restart the producers",
                    guide=GUIDE_LEASE_CONFLICTS,
                    symbol=symbol,
                )
            )
        elif lease.holder not in snapshot.heartbeats:
            expiry = "never expires" if lease.pttl_ms < 0 else f"expires in {lease.pttl_ms} ms"
            found.append(
                Finding(
                    kind="orphaned_lease",
                    subject=symbol,
                    detail=f"report:writer:{symbol} held by {lease.holder}, which has no heartbeat "
                    f"({expiry}, token {lease.token})",
                    remediation="release the lease (delete report:writer:{SYMBOL} if it still names "
                    "the holder) so a live node takes over; restart the holder",
                    guide=GUIDE_LEASE_CONFLICTS,
                    node=lease.holder,
                    symbol=symbol,
                    data={"pttl_ms": lease.pttl_ms, "token": lease.token},
                )
            )
    return found


def _clock_skew(snapshot: FleetSnapshot, max_skew_ms: int) -> tuple[dict[str, int], list[Finding]]:
    skews: dict[str, int] = {}
    found = []
    for node, payload in sorted(snapshot.heartbeats.items()):
        pttl = snapshot.heartbeat_pttl_ms.get(node)
        skew = clock_skew_ms(payload, snapshot.redis_time_ms, pttl)
        if skew is None:
            continue
        skews[node] = skew
        if abs(skew) > max_skew_ms:
            age_known = heartbeat_age_ms(payload, pttl) is not None
            found.append(
                Finding(
                    kind="clock_skew",
                    subject=node,
                    detail=f"clock {'ahead of' if skew > 0 else 'behind'} Redis by {abs(skew)} ms "
                    f"(limit {max_skew_ms} ms)",
                    remediation="enable NTP synchronisation on the host (VM time sync in the cloud)",
                    guide=GUIDE_CLOCK_SKEW,
                    node=node,
                    data={"skew_ms": skew, "age_known": age_known},
                )
            )
    return skews, found


def _settings_mismatch(snapshot: FleetSnapshot) -> list[Finding]:
    found = []
    for setting in LEASE_SETTINGS:
        values = {node: p.get(setting) for node, p in snapshot.heartbeats.items()}
        if len(set(map(repr, values.values()))) <= 1:
            continue
        counts: dict[str, int] = {}
        for value in values.values():
            counts[repr(value)] = counts.get(repr(value), 0) + 1
        majority = max(counts, key=lambda v: (counts[v], v))
        for node, value in sorted(values.items()):
            if repr(value) != majority:
                found.append(
                    Finding(
                        kind="lease_config_mismatch",
                        subject=node,
                        detail=f"{setting}={value!r} differs from the rest of the fleet ({majority})",
                        remediation="give every node identical NT_LEASE_TTL_MS, NT_MIN_HOLD_MS and "
                        "coordination settings, then restart the odd one",
                        guide=GUIDE_CONFIG,
                        node=node,
                        data={"setting": setting, "value": value},
                    )
                )
    return found


def _health(snapshot: FleetSnapshot) -> list[Finding]:
    found = []
    for node in sorted(snapshot.health):
        body = snapshot.health[node]
        if body is not None and (body.get("coordination") or {}).get("duplicate_node_id"):
            found.append(
                Finding(
                    kind="duplicate_node_id",
                    subject=node,
                    detail=f"two live processes heartbeat as {node} and fight over its leases",
                    remediation="give every node its own NT_NODE_ID, then restart one of the two",
                    guide=GUIDE_LEASE_CONFLICTS,
                    node=node,
                )
            )
        if body is None and node in snapshot.heartbeats:
            detail, status = "heartbeat present but /health unreachable", "unreachable"
        elif body is not None and body.get("status") not in (None, "ok"):
            status = str(body.get("status"))
            why = node_health.troubles(body, snapshot.redis_time_ms)
            detail = f"/health status {status}" + (f": {'; '.join(why)}" if why else "")
        else:
            continue
        waits = body is not None and node_health.only_rate_limited(body, snapshot.redis_time_ms)
        found.append(
            Finding(
                kind="node_unhealthy",
                subject=node,
                detail=detail,
                remediation="wait: it resyncs by itself once the rate limit lifts; a restart only adds "
                "requests"
                if waits
                else "check the node's logs for fast_cycle/slow_cycle and redis errors; "
                "restart it if it stays so",
                guide=GUIDE_RATE_LIMITED if waits else GUIDE_HUNG,
                node=node,
                data={"status": status},
            )
        )
    return found


def _staleness(snapshot: FleetSnapshot) -> list[Finding]:
    """Symbols whose live writer publishes old data, or has stopped publishing."""
    found = []
    for symbol in snapshot.all_symbols():
        lease, report = snapshot.leases.get(symbol), snapshot.reports.get(symbol)
        if lease is None or lease.holder not in snapshot.heartbeats or report is None:
            continue  # unowned / orphaned are their own findings; no report yet: just started
        silent_ms = None if report.written_ms is None else snapshot.redis_time_ms - report.written_ms
        age = report.data_age_ms
        if silent_ms is not None and silent_ms > STALE_AFTER_MS:
            detail = f"no report for {silent_ms} ms although {lease.holder} holds the lease"
        elif age is not None and age > STALE_AFTER_MS:
            detail = f"latest report (seq {report.seq}) carries market data {age} ms old"
        else:
            continue
        limited = node_health.rate_limited(snapshot.health.get(lease.holder), symbol, snapshot.redis_time_ms)
        if limited is not None:
            found.append(
                Finding(
                    kind="symbol_rate_limited",
                    subject=symbol,
                    detail=f"{detail}: {lease.holder}'s order-book snapshot requests are refused by the "
                    f"exchange's rate limit (HTTP 429/418, code -1003; {limited})",
                    remediation="wait: the node backs off (10 s, up to a minute) and resyncs by itself; a "
                    "resubscribe or restart only adds requests and prolongs the limit. If it recurs, "
                    "restart less and spread the symbols over more IPs",
                    guide=GUIDE_RATE_LIMITED,
                    node=lease.holder,
                    symbol=symbol,
                    data={"data_age_ms": age, "silent_ms": silent_ms, "seq": report.seq},
                )
            )
            continue
        found.append(
            Finding(
                kind="symbol_stale",
                subject=symbol,
                detail=detail,
                remediation=f"make {lease.holder} resubscribe {symbol} (fresh snapshot); if that does "
                "not help, check the exchange connection and restart the node",
                guide=GUIDE_STALE,
                node=lease.holder,
                symbol=symbol,
                data={"data_age_ms": age, "silent_ms": silent_ms, "seq": report.seq},
            )
        )
    return found


def diagnose(
    snapshot: FleetSnapshot,
    expected_nodes: Sequence[str] = (),
    max_skew_ms: int = MAX_CLOCK_SKEW_MS,
) -> Diagnosis:
    """Every finding the snapshot supports; ``expected_nodes`` are the nodes that should be live."""
    skews, skew_findings = _clock_skew(snapshot, max_skew_ms)
    findings = [
        *_node_down(snapshot, expected_nodes),
        *_leases(snapshot),
        *_staleness(snapshot),
        *skew_findings,
        *_settings_mismatch(snapshot),
        *_health(snapshot),
    ]
    return Diagnosis(
        redis_time_ms=snapshot.redis_time_ms,
        live_nodes=sorted(snapshot.heartbeats),
        findings=findings,
        clock_skew_ms=skews,
        owners={symbol: lease.holder for symbol, lease in sorted(snapshot.leases.items())},
        redis_latency_ms=snapshot.read_latency_ms,
    )
