"""How ``ntplatform up`` runs Dagster: the webserver and the daemon, and their environment.

Both load the code location from ``workspace.yaml`` (``definitions.py``) in the repository
root. ``DAGSTER_HOME`` is taken from the environment when set, else ``dagster_home/`` (SQLite
storage) or, when ``NT_DAGSTER_PG_URL`` is set, ``dagster_home/postgres/`` (PostgreSQL).
Dagster's resources read the rest from the environment (``definitions.py``): Redis, the
symbols, the nodes that must be live, the supervisor's control API and the control secret.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from ntplatform.settings import MIN_SECRET_CHARS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 3000
PG_URL = "NT_DAGSTER_PG_URL"


def dagster_home(env: Mapping[str, str]) -> Path:
    if env.get("DAGSTER_HOME"):
        return Path(env["DAGSTER_HOME"]).resolve()
    home = REPO_ROOT / "dagster_home"
    return home / "postgres" if env.get(PG_URL) else home


def ensure_control_secret(env: dict[str, str], run_dir: Path) -> str:
    """Give the fleet a control secret when none is configured: ``configured``, ``reused`` or ``generated``.

    Producers and Dagster started together then share it, so signed commands work out of the box.
    The one saved in ``run_dir/control_secret`` by an earlier ``up`` is reused while only its
    owner can read it, so the file stays right for every fleet started from this folder (a
    second ``up`` on another Redis no longer replaces the secret a running fleet was given).
    """
    if env.get("NT_CONTROL_SECRET"):
        return "configured"
    saved = _saved_secret(run_dir / "control_secret")
    if saved is not None:
        env["NT_CONTROL_SECRET"] = saved
        return "reused"
    env["NT_CONTROL_SECRET"] = secrets.token_hex(24)
    save_control_secret(env["NT_CONTROL_SECRET"], run_dir)
    return "generated"


def _saved_secret(path: Path) -> str | None:
    try:
        if path.stat().st_mode & 0o077:  # others could have read it: make a new one
            return None
        secret = path.read_text().strip()
    except OSError:
        return None
    return secret if len(secret) >= MIN_SECRET_CHARS else None


def save_control_secret(secret: str, run_dir: Path) -> Path:
    """Write a generated secret to ``run_dir/control_secret``, readable by its owner only, so an
    operator can sign ``ntplatform control`` commands for this run; returns the file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "control_secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there with other modes
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return path


def dagster_env(env: Mapping[str, str], node_ids: list[str], supervisor_url: str | None) -> dict[str, str]:
    """The environment of the webserver and the daemon (and the runs they launch)."""
    result = dict(env)
    result["DAGSTER_HOME"] = str(dagster_home(env))
    result["NT_EXPECTED_NODES"] = env.get("NT_EXPECTED_NODES") or ",".join(node_ids)
    result["NT_ARCHIVE_DIR"] = env.get("NT_ARCHIVE_DIR") or str(Path("data/archive").resolve())
    if supervisor_url:
        result.setdefault("NT_SUPERVISOR_URL", supervisor_url)
    return result


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def webserver_argv(port: int) -> list[str]:
    workspace = str(REPO_ROOT / "workspace.yaml")
    return [_tool("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]


def daemon_argv() -> list[str]:
    # Warnings and up: the incidents sensors open and what fails. Its INFO lines (every sensor's
    # every tick) would bury the platform's own events; each tick is on the sensor's UI page.
    workspace = str(REPO_ROOT / "workspace.yaml")
    return [_tool("dagster-daemon"), "run", "--log-level", "warning", "-w", workspace]
