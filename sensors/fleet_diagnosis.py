"""``diagnose_fleet``: the diagnosis-only job of the fleet sensors, and the diagnosis every
remediation job records first (``record_diagnosis``).

Its one op reads the fleet again, diagnoses it (``ntplatform.diagnosis``) and records, as
output metadata of the run and in its log, both what the sensor saw when it raised the
incident and what the fleet looks like now, in the troubleshooting guide's terms. Remediation
jobs (``sensors.remediation``: ``restart_producer``) call ``record_diagnosis`` and then act;
where no remediation job exists yet an operator acts on the recorded ``remediation`` lines.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import json
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pydantic

from ntplatform.diagnosis import Diagnosis, Finding
from sensors.resources import FleetResource

OP_NAME = "record_fleet_diagnosis"
TAG_INCIDENT = "ntplatform/incident"
TAG_TRIGGER = "ntplatform/trigger"
TAG_NODES = "ntplatform/nodes"
TAG_SYMBOLS = "ntplatform/symbols"


class DiagnoseConfig(dg.Config):
    """The incident a sensor raised: its id, the sensor, the nodes and symbols involved."""

    incident: str
    trigger: str
    nodes: list[str] = pydantic.Field(default_factory=list)
    symbols: list[str] = pydantic.Field(default_factory=list)
    detected: str = "[]"  # JSON list of the findings the sensor saw (ntplatform.diagnosis.Finding)


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "subject": finding.subject,
        "detail": finding.detail,
        "remediation": finding.remediation,
        "guide": finding.guide,
        "node": finding.node,
        "symbol": finding.symbol,
        "data": dict(finding.data),
    }


def incident_config(
    incident: str,
    trigger: str,
    findings: Sequence[Finding],
    nodes: Sequence[str] = (),
    symbols: Sequence[str] = (),
) -> DiagnoseConfig:
    return DiagnoseConfig(
        incident=incident,
        trigger=trigger,
        nodes=sorted(nodes),
        symbols=sorted(symbols),
        detected=json.dumps([finding_dict(f) for f in findings], sort_keys=True),
    )


def incident_tags(config: DiagnoseConfig) -> dict[str, str]:
    return {
        TAG_INCIDENT: config.incident,
        TAG_TRIGGER: config.trigger,
        TAG_NODES: ",".join(config.nodes),
        TAG_SYMBOLS: ",".join(config.symbols),
    }


def incident_run_request(
    incident: str,
    trigger: str,
    findings: Sequence[Finding],
    nodes: Sequence[str] = (),
    symbols: Sequence[str] = (),
) -> dg.RunRequest:
    """One ``diagnose_fleet`` run for one incident; the incident id is the ``run_key``."""
    config = incident_config(incident, trigger, findings, nodes, symbols)
    return dg.RunRequest(
        run_key=incident,
        job_name="diagnose_fleet",
        run_config=dg.RunConfig(ops={OP_NAME: config}),
        tags=incident_tags(config),
    )


def _relevant(diagnosis: Diagnosis, config: DiagnoseConfig) -> list[Finding]:
    nodes, symbols = set(config.nodes), set(config.symbols)
    return [
        f
        for f in diagnosis.findings
        if f.subject == "fleet" or f.node in nodes or f.symbol in symbols or (not nodes and not symbols)
    ]


def record_diagnosis(
    context: dg.OpExecutionContext, config: DiagnoseConfig, fleet: FleetResource
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Diagnose the fleet now and log it beside what the sensor saw: the record and its metadata."""
    detected = json.loads(config.detected)
    now = fleet.diagnose(expected_nodes=config.nodes)
    relevant = _relevant(now, config)
    for finding in detected:
        context.log.warning(
            f"at detection: {finding['kind']} {finding['subject']}: {finding['detail']} "
            f"[guide {finding['guide']}] remediation: {finding['remediation']}"
        )
    for f in relevant:
        context.log.warning(
            f"now: {f.kind} {f.subject}: {f.detail} [guide {f.guide}] remediation: {f.remediation}"
        )
    if not relevant:
        context.log.info(f"now: incident {config.incident} no longer visible; {now.summary()}")
    verdict = [finding_dict(f) for f in relevant]
    record = {
        "incident": config.incident,
        "trigger": config.trigger,
        "nodes": config.nodes,
        "symbols": config.symbols,
        "at_detection": detected,
        "now": verdict,
        "fleet": now.to_dict(),
    }
    return (
        record,
        {
            "incident": config.incident,
            "trigger": config.trigger,
            "nodes": ", ".join(config.nodes) or "-",
            "symbols": ", ".join(config.symbols) or "-",
            "verdict": "; ".join(f"{f['kind']} {f['subject']}" for f in detected) or "none",
            "diagnosis": dg.MetadataValue.json(record),
            "report": dg.MetadataValue.md(now.to_markdown()),
            "live_nodes": ", ".join(now.live_nodes) or "none",
            "clock_skew_ms": dg.MetadataValue.json(now.clock_skew_ms),
            "redis_latency_ms": now.redis_latency_ms if now.redis_latency_ms is not None else -1.0,
        },
    )


@dg.op(name=OP_NAME)
def record_fleet_diagnosis(
    context: dg.OpExecutionContext, config: DiagnoseConfig, fleet: FleetResource
) -> dg.Output[dict[str, Any]]:
    """Diagnose the fleet now and record it beside what the sensor saw (no remediation)."""
    record, metadata = record_diagnosis(context, config, fleet)
    return dg.Output(record, metadata=metadata)


@dg.job
def diagnose_fleet() -> None:
    """Record what the fleet sensors found (which node, which symbols, clock skew, lease settings)."""
    record_fleet_diagnosis()
