"""The control API of ``ntplatform up`` and its guard rail against flapping.

``GET /processes`` lists the supervised processes; ``POST /processes/{name}/restart`` stops
one (SIGTERM, SIGKILL after ``STOP_TIMEOUT_S``) and starts it again at once. It listens on
loopback only, from a daemon thread of the supervisor. A process restarted ``max_restarts``
times within ``window_s`` (automatic restarts and API restarts alike) is not restarted again
until the window has moved on: the API answers 409 and the supervisor logs
``restart_refused`` with ``reason=flapping`` (see ``RestartBudget``). Processes the
supervisor does not restart by itself are not restarted through the API either (403): that is
Redis, which ``up`` runs without persistence, so a restart would wipe every report, lease and
heartbeat.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ntplatform.supervisor import Child, Supervisor

DEFAULT_CONTROL_PORT = 9199
MAX_RESTARTS = 3  # restarts allowed per process within RESTART_WINDOW_S
RESTART_WINDOW_S = 600.0
STOP_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"


@dataclass
class RestartBudget:
    """At most ``max_restarts`` restarts per process within any ``window_s`` seconds (no I/O).

    Times are passed in (``time.monotonic()`` in the supervisor), so the decision is testable.
    """

    max_restarts: int = MAX_RESTARTS
    window_s: float = RESTART_WINDOW_S
    _times: dict[str, deque[float]] = field(default_factory=dict)

    def recent(self, name: str, now: float) -> int:
        """Restarts of ``name`` within the window ending at ``now``."""
        times = self._times.get(name)
        if times is None:
            return 0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return len(times)

    def allows(self, name: str, now: float) -> bool:
        return self.recent(name, now) < self.max_restarts

    def record(self, name: str, now: float) -> None:
        self._times.setdefault(name, deque()).append(now)

    def refusal(self, name: str, now: float) -> str:
        """Why ``name`` may not be restarted now, in one line."""
        return (
            f"{name} was restarted {self.recent(name, now)} times within {self.window_s:g} s "
            f"(limit {self.max_restarts}): flapping, not restarting it again; investigate its log"
        )


class RestartRefused(Exception):
    """The restart budget of a process is spent (flapping)."""


def not_restartable(child: Child) -> str:
    """Why the API does not restart ``child``, a process the supervisor never restarts."""
    if child.role == "redis":
        return (
            f"{child.name} is not restarted through the API: it keeps nothing on disk, so a restart "
            "would wipe every report, lease and heartbeat (the supervisor starts it again only when it "
            "dies); stop and start `ntplatform up` if you mean it"
        )
    return f"{child.name} is not restarted through the API: the supervisor never restarts it"


def stop_child(child: Child, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; the exit code.

    SIGCONT follows the SIGTERM so that a frozen (SIGSTOPped) process wakes up to handle it
    and stops cleanly, handing its leases over, instead of waiting for the SIGKILL.
    """
    process = child.process
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _stop_group(process.pid)
    return process.returncode


def stop_children(children: list[Child], timeout_s: float = STOP_TIMEOUT_S) -> list[int | None]:
    """Stop several children at once (as ``stop_child``, with one shared deadline); their exit codes.

    Producers stopped one after the other would hand their symbols to peers about to stop too.
    """
    running = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return [stop_child(child) for child in children]  # each stopped by now: clears its group


def _stop_group(pgid: int) -> None:
    """Kill what the child left behind in its process group (Dagster's code servers and runs)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def describe(child: Child) -> dict[str, Any]:
    process = child.process
    started = dt.datetime.fromtimestamp(child.started_wall, dt.UTC).isoformat(timespec="milliseconds")
    return {
        "name": child.name,
        "role": child.role,
        "pid": process.pid if process else None,
        "alive": child.alive(),
        "restarts": child.restarts,
        "exit_code": process.poll() if process else None,
        "started_at": started if child.started_wall else None,
    }


class ControlServer:
    """The HTTP control API, served from a daemon thread; ``close()`` stops it."""

    def __init__(self, supervisor: Supervisor, port: int) -> None:
        self.supervisor = supervisor
        handler = type("Handler", (_Handler,), {"control": self})
        self.httpd = ThreadingHTTPServer((LOOPBACK, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="control-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def processes(self) -> list[dict[str, Any]]:
        with self.supervisor.lock:
            return [describe(child) for child in self.supervisor.children]

    def restart(self, name: str) -> dict[str, Any]:
        """Stop ``name`` and start it again at once; ``RestartRefused`` when it is flapping."""
        sup = self.supervisor
        with sup.lock:  # the watch loop must not restart it meanwhile
            child = next(c for c in sup.children if c.name == name)
            now = time.monotonic()
            if not sup.budget.allows(name, now):
                reason = sup.budget.refusal(name, now)
                sup.log.warning("restart_refused", name=name, reason="flapping", detail=reason, by="api")
                raise RestartRefused(reason)
            old_pid = child.process.pid if child.process else None
            code = stop_child(child)
            sup.budget.record(name, now)
            child.restarts += 1
            child.next_start, child.refused = 0.0, False
            child.start()
            new_pid = child.process.pid if child.process else None
            sup.log.info(
                "process_restarted", name=name, reason="api", old_pid=old_pid, new_pid=new_pid, exit_code=code
            )
            return {"name": name, "old_pid": old_pid, "new_pid": new_pid}

    def handle(self, method: str, path: str) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if method == "GET" and parts == ["processes"]:
            return 200, self.processes()
        if method == "POST" and len(parts) == 3 and parts[0] == "processes" and parts[2] == "restart":
            by_name = {child.name: child for child in self.supervisor.children}
            child = by_name.get(parts[1])
            if child is None:
                return 404, {"error": f"no process named {parts[1]!r}; known: {', '.join(by_name)}"}
            if not child.restart or child.role == "redis":
                reason = not_restartable(child)
                self.supervisor.log.warning(
                    "restart_refused", name=child.name, reason="not_restartable", detail=reason, by="api"
                )
                return 403, {"error": reason, "reason": "not_restartable"}
            try:
                return 200, self.restart(parts[1])
            except RestartRefused as refused:
                return 409, {"error": str(refused), "reason": "flapping"}
        return 404, {"error": f"no route {method} {path}; try GET /processes, POST /processes/NAME/restart"}


class _Handler(BaseHTTPRequestHandler):
    control: ControlServer

    def _answer(self, method: str) -> None:
        status, body = self.control.handle(method, self.path)
        payload = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:  # no such routes: the JSON "no route" answer, not an HTML page
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # the supervisor logs the restarts
        return
