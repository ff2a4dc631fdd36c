"""The runbooks' read-only commands, run for real against a running three-node fleet.

Ports, the Redis address and the log file are substituted for the test's own; commands
that start or stop things, or never end (``--latency``), are left out. Each command must
exit 0 (or 1, a grep that found nothing) and write nothing to stderr (curl, redis-cli
and jq all complain there).
"""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, UP_SECRET, ManagedProcess, free_port, python_env, wait_for

pytestmark = pytest.mark.integration
READ_ONLY = re.compile(r"^(curl|redis-cli|grep|for |jq )")
# Commands that change things, or stream until interrupted.
NEVER_RUN = (
    "--latency",
    "SUBSCRIBE",
    "MONITOR",
    "CONFIG SET",
    "FLUSH",
    " DEL ",
    "kill ",
    "docker ",
    "watch ",
    "ntplatform up",
    " > ",  # writes a file: part of the escalation snapshot, not a check
)


def _runbook_commands() -> list[str]:
    commands = []
    for path in sorted((ROOT / "docs" / "runbooks").glob("*.md")):
        inside, pending = False, ""
        for line in path.read_text().splitlines():
            if line.startswith("```"):
                inside = line.strip() in ("```bash", "```sh", "```shell")
                continue
            if not inside or not line.strip() or line.lstrip().startswith("#"):
                continue
            continued = line.rstrip().endswith("\\")
            pending += line.rstrip().rstrip("\\") + (" " if continued else "\n")
            open_loop = re.search(r"\b(for|while)\b", pending) and not re.search(r"\bdone\b", pending)
            if continued or open_loop:
                continue
            command, pending = pending.strip(), ""
            if READ_ONLY.match(command) and not any(bad in command for bad in NEVER_RUN):
                commands.append(command)
    return commands


def _health_ok(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return response.status == 200


def test_runbook_commands_work_against_a_running_fleet(processes, tmp_path):
    redis_port, exchange_port, base = free_port(), free_port(), free_port() - 1
    log_path = tmp_path / "ntplatform.log"
    up = ManagedProcess(
        [
            PYTHON,
            "-m",
            "ntplatform.cli",
            "up",
            "--no-dagster",
            "--nodes",
            "3",
            "--exchange-port",
            str(exchange_port),
            "--metrics-base-port",
            str(base),
        ],
        python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", NT_CONTROL_SECRET=UP_SECRET),
        log_path,
    )
    processes.append(up)
    ports = {9101: base + 1, 9102: base + 2, 9103: base + 3}
    for port in ports.values():
        wait_for(lambda p=port: _health_ok(p), 120, f"node on {port} healthy")

    commands = _runbook_commands()
    assert len(commands) > 20
    failures = []
    for command in commands:
        concrete = command.replace(".run/ntplatform.log", str(log_path))
        for documented, actual in ports.items():
            concrete = concrete.replace(str(documented), str(actual))
        concrete = re.sub(r"redis-cli(?! -u)", f"redis-cli -p {redis_port}", concrete)
        try:
            result = subprocess.run(
                ["bash", "-c", concrete],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=tmp_path,  # anything a command writes stays out of the checkout
                env=python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0"),
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{command}\n  -> did not finish in 30 s")
            continue
        if result.returncode not in (0, 1) or result.stderr.strip():
            failures.append(f"{command}\n  -> exit {result.returncode}: {result.stderr.strip()[:300]}")
    assert up.stop(signal.SIGINT, timeout_s=60) == 0
    assert failures == [], "\n".join(failures)


def test_runbook_command_extraction_joins_continued_lines():
    joined = [c for c in _runbook_commands() if "rebalancing_triggered" in c and "jq" in c]
    assert joined, "the multi-line rebalancing command should be one command"
    assert all("\\" not in c.split("jq")[0][-3:] for c in joined)
    assert Path(ROOT / "docs" / "runbooks" / "troubleshooting.md").exists()
