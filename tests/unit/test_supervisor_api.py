"""The flapping guard rail of ``ntplatform up`` (``RestartBudget``) and its control-port argument."""

from __future__ import annotations

import argparse

from ntplatform.supervisor_api import RestartBudget
from ntplatform.up_arguments import add_arguments, check_arguments


def test_budget_allows_up_to_the_limit_within_the_window_then_refuses() -> None:
    budget = RestartBudget(max_restarts=3, window_s=600)
    for now in (0.0, 10.0, 20.0):
        assert budget.allows("n1", now)
        budget.record("n1", now)
    assert not budget.allows("n1", 30.0)
    assert budget.recent("n1", 30.0) == 3
    assert "restarted 3 times within 600 s (limit 3): flapping" in budget.refusal("n1", 30.0)


def test_budget_is_per_process_and_forgets_restarts_older_than_the_window() -> None:
    budget = RestartBudget(max_restarts=2, window_s=60)
    budget.record("n1", 0.0)
    budget.record("n1", 30.0)
    assert not budget.allows("n1", 59.0)
    assert budget.allows("n2", 59.0), "another process has its own budget"
    assert budget.allows("n1", 60.0), "the restart at 0 s has left the window"
    assert budget.recent("n1", 60.0) == 1
    assert budget.recent("never", 0.0) == 0


def test_budget_of_zero_never_restarts() -> None:
    assert not RestartBudget(max_restarts=0).allows("n1", 0.0)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_control_port_defaults_to_9199_zero_disables_and_bad_ports_are_named() -> None:
    assert _args().control_port == 9199
    assert check_arguments(_args("--control-port", "0")) is None
    problem = check_arguments(_args("--control-port", "70000"))
    assert problem == "--control-port 70000: must be from 0 (off) to 65535"


def test_watch_stops_restarting_a_crash_looping_child_and_logs_flapping(capsys) -> None:
    import os
    import sys
    import time

    from ntplatform.supervisor import Child, Supervisor

    supervisor = Supervisor(argparse.Namespace(), {"NT_LOG_LEVEL": "info"})
    supervisor.budget = RestartBudget(max_restarts=1, window_s=600)
    child = Child(
        "crasher",
        [sys.executable, "-c", "raise SystemExit(1)"],
        dict(os.environ),
        restart=True,
        role="producer",
    )
    supervisor.children.append(child)
    child.start()

    def exit_and_come_due() -> None:
        assert child.process is not None
        child.process.wait(30)
        supervisor._watch_once()  # notices the exit, schedules the restart
        child.next_start = time.monotonic() - 1  # skip the backoff
        supervisor._watch_once()

    exit_and_come_due()
    assert child.restarts == 1
    exit_and_come_due()
    assert child.refused
    assert child.restarts == 1
    supervisor._watch_once()
    assert not child.alive()
    lines = [line for line in capsys.readouterr().out.splitlines() if "restart_refused" in line]
    assert len(lines) == 1
    assert '"reason":"flapping"' in lines[0]
    assert '"name":"crasher"' in lines[0]


def test_settings_up_decides_per_node_are_named_when_set(capsys) -> None:
    import json

    from ntplatform.supervisor import Supervisor

    Supervisor(argparse.Namespace(), {"NT_METRICS_PORT": "99999", "SYMBOLS": "BTCUSDT"}).warn_overridden()
    (line,) = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert (event["event"], event["level"], event["variable"], event["value"]) == (
        "setting_overridden",
        "warning",
        "NT_METRICS_PORT",
        "99999",
    )
    assert "--metrics-base-port + i" in event["by"]
