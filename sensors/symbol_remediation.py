"""Remediation jobs for a symbol whose reports stopped or went stale (guide sections 1, 2, 6).

Each job's one op records the diagnosis first (``record_diagnosis``), then acts, then waits
(at most ``recovery_timeout_s``) until every symbol of the incident is written again by a
live node with fresh data: a report newer than the action whose ``data_age_ms`` is under
``FRESH_DATA_AGE_MS`` (the ``MarketDataStale`` threshold). The actions:

- ``resubscribe_symbol``: a signed ``resubscribe`` to the symbol's current writer, which
  drops and renews its market-data subscriptions (fresh snapshot);
- ``release_orphaned_leases``: delete each lease whose holder has no heartbeat (only if it
  still names that holder: ``RELEASE_ORPHANED``), then a signed ``rebalance`` to every node;
- ``force_rebalance``: a signed ``rebalance`` to every node.

What was done, the nodes' acknowledgements and whether the symbols recovered are run
metadata; a command nobody accepted, or symbols that did not recover, fail the run with a
message that says which.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ntplatform import control
from ntplatform.control_client import ControlError
from ntplatform.diagnosis import Finding, FleetSnapshot
from sensors.fleet_diagnosis import DiagnoseConfig, incident_config, incident_tags, record_diagnosis
from sensors.resources import ControlResource, FleetResource

FRESH_DATA_AGE_MS = 1000


class SymbolRemediationConfig(DiagnoseConfig):
    """The incident (as for ``diagnose_fleet``); ``symbols`` are the ones to bring back."""

    recovery_timeout_s: float = 60.0


def symbol_run_request(
    job_name: str, incident: str, trigger: str, findings: Sequence[Finding], symbols: Sequence[str]
) -> dg.RunRequest:
    """One run of ``job_name`` for one incident; the incident id is the ``run_key``."""
    nodes = sorted({f.node for f in findings if f.node})
    config = SymbolRemediationConfig(
        **incident_config(incident, trigger, findings, nodes, symbols).model_dump()
    )
    return dg.RunRequest(
        run_key=incident,
        job_name=job_name,
        run_config=dg.RunConfig(ops={f"{job_name}_op": config}),
        tags=incident_tags(config),
    )


def recovered(snapshot: FleetSnapshot, symbol: str, since_ms: int) -> bool:
    """Written by a live node after ``since_ms`` (Redis time) with fresh data."""
    report, lease = snapshot.reports.get(symbol), snapshot.leases.get(symbol)
    return (
        lease is not None
        and lease.holder in snapshot.heartbeats
        and report is not None
        and report.written_ms is not None
        and report.written_ms > since_ms
        and report.data_age_ms is not None
        and report.data_age_ms < FRESH_DATA_AGE_MS
    )


def _wait_for_recovery(
    context: dg.OpExecutionContext, fleet: FleetResource, symbols: list[str], since_ms: int, timeout_s: float
) -> tuple[dict[str, Any], list[str]]:
    started = time.monotonic()
    pending = list(symbols)
    recovered_after: dict[str, Any] = {}
    while pending and time.monotonic() - started < timeout_s:
        snapshot = fleet.snapshot()
        for symbol in list(pending):
            if recovered(snapshot, symbol, since_ms):
                pending.remove(symbol)
                report = snapshot.reports[symbol]
                recovered_after[symbol] = {
                    "after_s": round(time.monotonic() - started, 1),
                    "writer": snapshot.leases[symbol].holder,
                    "seq": report.seq,
                    "data_age_ms": report.data_age_ms,
                }
                context.log.info(f"{symbol}: reports resumed: {recovered_after[symbol]}")
        if pending:
            time.sleep(0.5)
    return recovered_after, pending


def _conclude(
    context: dg.OpExecutionContext,
    fleet: FleetResource,
    config: SymbolRemediationConfig,
    record: dict[str, Any],
    metadata: dict[str, Any],
    action: dict[str, Any],
    since_ms: int,
) -> dg.Output[dict[str, Any]]:
    symbols = list(config.symbols)
    back, missing = _wait_for_recovery(context, fleet, symbols, since_ms, config.recovery_timeout_s)
    outcome = "recovered" if not missing else "not_recovered"
    metadata = {
        **metadata,
        "action": action["action"],
        "outcome": outcome,
        "remediation": dg.MetadataValue.json({**action, "recovered": back, "not_recovered": missing}),
    }
    if missing:
        raise dg.Failure(
            description=f"{action['action']} done, but {', '.join(missing)} did not get fresh reports "
            f"within {config.recovery_timeout_s:g} s; see the writer's log (book_resync, ws_resubscribe)",
            metadata=metadata,
        )
    return dg.Output({**record, "remediation": {**action, "recovered": back}}, metadata=metadata)


def _send(
    control_channel: ControlResource, command: str, target: str, symbol: str | None, expected: int
) -> list:
    try:
        acks = control_channel.send(command, target, symbol, expected=expected)
    except ControlError as error:
        raise dg.Failure(description=str(error)) from None
    if not any(a.get("outcome") == "accepted" for a in acks):
        reasons = ", ".join(f"{a.get('node_id')}: {a.get('reason')}" for a in acks) or "no answer"
        raise dg.Failure(
            description=f"{command} to {target} was not accepted ({reasons}); check NT_CONTROL_SECRET "
            "on the producers and in Dagster",
            metadata={"acks": dg.MetadataValue.json(acks)},
        )
    return acks


def _redis_ms(fleet: FleetResource) -> int:
    return fleet.snapshot().redis_time_ms


def _rebalance(context: dg.OpExecutionContext, fleet: FleetResource, channel: ControlResource) -> list:
    live = len(fleet.snapshot().heartbeats)
    context.log.info(f"sending a signed rebalance to every node ({live} live)")
    return _send(channel, control.REBALANCE, control.EVERY_NODE, None, expected=max(live, 1))


@dg.op(name="resubscribe_symbol_op")
def resubscribe_symbol_op(
    context: dg.OpExecutionContext,
    config: SymbolRemediationConfig,
    fleet: FleetResource,
    control_channel: ControlResource,
) -> dg.Output[dict[str, Any]]:
    """Record the diagnosis, make each symbol's writer resubscribe it, wait for fresh reports."""
    record, metadata = record_diagnosis(context, config, fleet)
    since = _redis_ms(fleet)
    sent = []
    for symbol in config.symbols:
        lease = fleet.snapshot().leases.get(symbol)
        if lease is None:
            raise dg.Failure(
                description=f"{symbol}: nobody holds report:writer:{symbol}; use force_rebalance"
            )
        context.log.warning(f"{symbol}: asking its writer {lease.holder} to resubscribe ({config.incident})")
        acks = _send(control_channel, control.RESUBSCRIBE, lease.holder, symbol, expected=1)
        sent.append({"symbol": symbol, "node": lease.holder, "acks": acks})
    action = {"action": "resubscribe", "commands": sent}
    return _conclude(context, fleet, config, record, metadata, action, since)


@dg.op(name="release_orphaned_leases_op")
def release_orphaned_leases_op(
    context: dg.OpExecutionContext,
    config: SymbolRemediationConfig,
    fleet: FleetResource,
    control_channel: ControlResource,
) -> dg.Output[dict[str, Any]]:
    """Record the diagnosis, release leases held by nodes without heartbeat, rebalance, wait."""
    record, metadata = record_diagnosis(context, config, fleet)
    since = _redis_ms(fleet)
    released: list[dict[str, Any]] = []
    for symbol in config.symbols:
        lease = fleet.snapshot().leases.get(symbol)
        if lease is None:
            released.append({"symbol": symbol, "holder": None, "result": "already_free"})
            continue
        result = control_channel.release_orphaned_lease(symbol, lease.holder)
        context.log.warning(f"{symbol}: lease of {lease.holder} (token {lease.token}): {result}")
        released.append({"symbol": symbol, "holder": lease.holder, "token": lease.token, "result": result})
    acks = _rebalance(context, fleet, control_channel)
    action = {"action": "release_orphaned_leases", "released": released, "rebalance_acks": acks}
    return _conclude(context, fleet, config, record, metadata, action, since)


@dg.op(name="force_rebalance_op")
def force_rebalance_op(
    context: dg.OpExecutionContext,
    config: SymbolRemediationConfig,
    fleet: FleetResource,
    control_channel: ControlResource,
) -> dg.Output[dict[str, Any]]:
    """Record the diagnosis, make every node recompute ownership now, wait for the symbols."""
    record, metadata = record_diagnosis(context, config, fleet)
    since = _redis_ms(fleet)
    acks = _rebalance(context, fleet, control_channel)
    return _conclude(context, fleet, config, record, metadata, {"action": "rebalance", "acks": acks}, since)


TAGS = "ntplatform/remediation"


@dg.job(tags={TAGS: "resubscribe_symbol"})
def resubscribe_symbol() -> None:
    """Make a stale symbol's writer resubscribe its market data (fresh book snapshot)."""
    resubscribe_symbol_op()


@dg.job(tags={TAGS: "release_orphaned_leases"})
def release_orphaned_leases() -> None:
    """Release writer leases whose holder has no heartbeat, then rebalance."""
    release_orphaned_leases_op()


@dg.job(tags={TAGS: "force_rebalance"})
def force_rebalance() -> None:
    """Make every producer recompute symbol ownership now."""
    force_rebalance_op()
