"""``restart_producer``: restart one hung or dead producer through the supervisor (guide section 4).

Its one op first records the diagnosis exactly as ``diagnose_fleet`` does
(``sensors.fleet_diagnosis.record_diagnosis``), then asks the supervisor of ``ntplatform up``
to restart the node (``SupervisorResource.restart``: SIGTERM, SIGKILL after 10 s, start
again), then waits, at most ``heartbeat_timeout_s``, for the node's heartbeat
``nt:node:{node}`` to come back from the new process (its pid, or a new ``started_ms``). Old
and new pid and the outcome are run metadata. A refused restart (the supervisor's flapping
guard rail answers 409), an unknown node, a process that is not a producer (``redis``: a
restart would wipe it) or a heartbeat that does not return fails the op with a message that
says so; the diagnosis is logged before either way. A node that is heartbeating again when
the run starts (it was held up, or Redis was, and every heartbeat expired at once) is not
restarted: the run records ``outcome: recovered_before_restart`` (``force: true`` restarts it
anyway, for an operator launching the job by hand).
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from ntplatform.diagnosis import Finding
from sensors.fleet_diagnosis import DiagnoseConfig, incident_config, incident_tags, record_diagnosis
from sensors.resources import FleetResource, SupervisorError, SupervisorResource

OP_NAME = "restart_producer_node"
JOB_NAME = "restart_producer"


class RestartConfig(DiagnoseConfig):
    """The incident (as for ``diagnose_fleet``) and the node to restart."""

    node_id: str
    heartbeat_timeout_s: float = 60.0
    force: bool = False  # restart even if the node is heartbeating again


def restart_run_request(
    incident: str, trigger: str, findings: Sequence[Finding], node: str, symbols: Sequence[str] = ()
) -> dg.RunRequest:
    """One ``restart_producer`` run for one incident; the incident id is the ``run_key``."""
    base = incident_config(incident, trigger, findings, [node], symbols)
    config = RestartConfig(**base.model_dump(), node_id=node)
    return dg.RunRequest(
        run_key=incident,
        job_name=JOB_NAME,
        run_config=dg.RunConfig(ops={OP_NAME: config}),
        tags=incident_tags(config),
    )


def _returned(fleet: FleetResource, node: str, new_pid: int | None, old: dict[str, Any]) -> dict[str, Any]:
    """The node's heartbeat once it comes from the restarted process, else {}."""
    beat = dict(fleet.snapshot().heartbeats.get(node) or {})
    if not beat:
        return {}
    if new_pid is not None:
        return beat if beat.get("pid") == new_pid else {}
    return beat if beat.get("started_ms") != old.get("started_ms") else {}


def _check_is_producer(supervisor: SupervisorResource, node: str, metadata: dict[str, Any]) -> None:
    """Fail the op unless the supervisor runs ``node`` as a producer."""
    try:
        processes = supervisor.processes()
    except SupervisorError as error:
        raise dg.Failure(description=f"{node}: restart failed: {error}", metadata=metadata) from None
    roles = {p["name"]: p.get("role") for p in processes}
    producers = ", ".join(sorted(name for name, role in roles.items() if role == "producer")) or "none"
    if roles.get(node) == "producer":
        return
    what = f"is the supervisor's {roles[node]} process" if node in roles else "is not supervised here"
    raise dg.Failure(
        description=f"{node} {what}, not a producer: restart_producer restarts only producers ({producers})",
        metadata={**metadata, "outcome": "not_a_producer"},
    )


@dg.op(name=OP_NAME)
def restart_producer_node(
    context: dg.OpExecutionContext,
    config: RestartConfig,
    fleet: FleetResource,
    supervisor: SupervisorResource,
) -> dg.Output[dict[str, Any]]:
    """Record the diagnosis, restart the node through the supervisor, wait for its heartbeat."""
    record, metadata = record_diagnosis(context, config, fleet)
    node = config.node_id
    old_beat = dict(fleet.snapshot().heartbeats.get(node) or {})
    if old_beat and not config.force:
        context.log.info(
            f"{node}: heartbeating again (pid {old_beat.get('pid')}), not restarting it; "
            "run with force: true to restart it anyway"
        )
        recovered = {
            "node": node,
            "outcome": "recovered_before_restart",
            "heartbeat_pid": old_beat.get("pid"),
        }
        return dg.Output(
            {**record, "restart": recovered},
            metadata={
                **metadata,
                "node": node,
                "outcome": "recovered_before_restart",
                "restart": dg.MetadataValue.json(recovered),
            },
        )
    _check_is_producer(supervisor, node, {**metadata, "node": node})
    context.log.warning(f"restarting {node} through the supervisor at {supervisor.url} ({config.incident})")
    try:
        restarted = supervisor.restart(node)
    except SupervisorError as error:
        refused = "flapping: restart refused" if error.status == 409 else "restart failed"
        raise dg.Failure(
            description=f"{node}: {refused}: {error}",
            metadata={"node": node, "incident": config.incident, "outcome": refused, **metadata},
        ) from None
    old_pid, new_pid = restarted.get("old_pid"), restarted.get("new_pid")
    context.log.info(
        f"{node}: supervisor restarted it, pid {old_pid} -> {new_pid}; waiting for its heartbeat"
    )
    started = time.monotonic()
    beat: dict[str, Any] = {}
    while time.monotonic() - started < config.heartbeat_timeout_s:
        beat = _returned(fleet, node, new_pid, old_beat)
        if beat:
            break
        time.sleep(1.0)
    waited_s = round(time.monotonic() - started, 1)
    outcome = "heartbeat_returned" if beat else "heartbeat_missing"
    restart = {
        "node": node,
        "old_pid": old_pid,
        "new_pid": new_pid,
        "heartbeat_pid": beat.get("pid"),
        "heartbeat_started_ms": beat.get("started_ms"),
        "previous_heartbeat_pid": old_beat.get("pid"),
        "outcome": outcome,
        "waited_s": waited_s,
    }
    metadata = {
        **metadata,
        "node": node,
        "old_pid": str(old_pid),
        "new_pid": str(new_pid),
        "outcome": outcome,
        "restart": dg.MetadataValue.json(restart),
    }
    if not beat:
        raise dg.Failure(
            description=(
                f"{node}: restarted (pid {old_pid} -> {new_pid}) but no heartbeat from the new process "
                f"within {config.heartbeat_timeout_s:g} s; see its log and /health"
            ),
            metadata=metadata,
        )
    context.log.info(f"{node}: heartbeat returned from pid {beat.get('pid')} after {waited_s} s")
    return dg.Output({**record, "restart": restart}, metadata=metadata)


@dg.job(name=JOB_NAME, tags={"ntplatform/remediation": "restart_producer"})
def restart_producer() -> None:
    """Restart a producer that stopped heartbeating (hung or dead), after recording the diagnosis."""
    restart_producer_node()
