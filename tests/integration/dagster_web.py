"""Real Dagster processes for tests: a private instance, the webserver, the daemon, GraphQL."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import PYTHON, ROOT, ManagedProcess, free_port, wait_for

BIN = Path(PYTHON).parent


def private_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME of the test's own with the project's ``dagster.yaml`` (SQLite storage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def start_webserver(env: dict[str, str], tmp_path: Path, timeout_s: float) -> tuple[ManagedProcess, str]:
    """``dagster-webserver`` on ``workspace.yaml`` and a free port, once it answers."""
    base_url = f"http://127.0.0.1:{free_port()}"
    argv = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", base_url.rsplit(":", 1)[1]]
    server = ManagedProcess([*argv, "-w", str(ROOT / "workspace.yaml")], env, tmp_path / "webserver.log")
    wait_for(lambda: answers(server, base_url), timeout_s, f"dagster-webserver on {base_url}", 0.5)
    return server, base_url


def start_daemon(env: dict[str, str], tmp_path: Path) -> ManagedProcess:
    """``dagster-daemon run``: sensors, schedules, the run queue and backfills."""
    return ManagedProcess(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")], env, tmp_path / "daemon.log"
    )


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` of one GraphQL request; GraphQL errors fail the test with the answer."""
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    assert "errors" not in body, body
    return dict(body["data"])


def answers(server: ManagedProcess, base_url: str) -> bool:
    assert server.process.poll() is None, f"dagster-webserver exited:\n{server.output()}"
    with urllib.request.urlopen(f"{base_url}/server_info", timeout=2) as response:
        return bool(response.status == 200)


def stop_with_children(server: ManagedProcess) -> None:
    """Stop a Dagster process, then whatever it started (code servers, runs) that outlived it."""
    try:
        children = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    server.stop()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()
