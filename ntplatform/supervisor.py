"""``ntplatform up``: run the whole platform on one machine as supervised processes.

Starts, in order and only where needed: a Redis server (when none answers at
``REDIS_URL`` and the URL is local), the replay exchange (when recordings are found
and ``--live`` is not given), N producer nodes, and the Dagster webserver and daemon
(unless ``--no-dagster``; ``ntplatform.dagster_processes``). Prints where to look, restarts
a process that dies (with backoff), and on Ctrl-C or SIGTERM stops exactly the
processes it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ntplatform import dagster_processes, supervisor_api
from ntplatform.logs import EventLog
from ntplatform.probes import (
    find_redis_server,
    health_status,
    http_ok,
    nodes_in_use,
    port_free,
    redis_answers,
    replay_symbols,
    wait_until,
)
from ntplatform.settings import DEFAULT_REPLAY_PATH, redact_url
from ntplatform.up_arguments import check_arguments, check_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ERROR_EXIT = 2  # a child that exits 2 was misconfigured: restarting cannot help
RUN_DIR = Path(".run")
# Settings `up` gives each node itself: set in the environment, they are not used.
OVERRIDDEN = {
    "NT_NODE_ID": "up names its nodes producer-node-001, -002, ... (run `ntplatform producer` to choose)",
    "NT_METRICS_PORT": "node i listens on --metrics-base-port + i (default 9100 + i)",
}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    restart: bool  # restarted when it exits (and, except redis, through the control API)
    role: str  # redis, replay-exchange, producer or dagster
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)
    started_wall: float = 0.0
    refused: bool = False  # flapping: no more automatic restarts

    def start(self) -> None:
        # Own process group: Ctrl-C reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(self.argv, env=self.env, process_group=0)
        self.started_at = time.monotonic()
        self.started_wall = time.time()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Starts the platform's processes and keeps them running."""

    def __init__(self, args: argparse.Namespace, environ: dict[str, str]) -> None:
        self.args = args
        self.env = environ
        self.log = EventLog("supervisor", environ.get("NT_LOG_LEVEL", "info").lower())
        self.children: list[Child] = []
        self.redis_url = environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self._stopping = False
        self.failed = False
        self._foreign_warned: set[str] = set()
        # The control API's thread and the watch loop both restart children: one at a time.
        self.lock = threading.RLock()
        self.budget = supervisor_api.RestartBudget(
            supervisor_api.MAX_RESTARTS, supervisor_api.RESTART_WINDOW_S
        )
        self.control: supervisor_api.ControlServer | None = None

    def replay_path(self) -> Path | None:
        if self.args.live:
            return None
        if self.args.replay_path is not None:
            return self.args.replay_path
        configured = self.env.get("NT_REPLAY_PATH")
        if configured:
            return Path(configured)
        candidates = [DEFAULT_REPLAY_PATH, REPO_ROOT / DEFAULT_REPLAY_PATH]
        for candidate in candidates:
            if candidate.exists():
                return candidate
        self.log.warning(
            "replay_recordings_not_found",
            tried=[str(c.resolve()) for c in candidates],
            using="live Binance",
            hint="set NT_REPLAY_PATH or --replay-path to replay recordings, or --live to silence this",
        )
        return None

    def ensure_redis(self) -> bool:
        if redis_answers(self.redis_url):
            self.log.info("redis_found", redis_url=redact_url(self.redis_url))
            return True
        parsed = urlparse(self.redis_url)
        binary = find_redis_server()
        if parsed.hostname not in LOCAL_HOSTS or binary is None:
            self.log.error(
                "fatal_error",
                reason="redis_unreachable",
                redis_url=redact_url(self.redis_url),
                hint="start Redis or set REDIS_URL" if binary else "no redis-server found",
            )
            return False
        data_dir = RUN_DIR / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port",
            str(parsed.port or 6379),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir.resolve()),
        ]
        if parsed.password:
            argv += ["--requirepass", parsed.password]
        # Restarted if it dies (empty: the producers rebuild heartbeats and leases), never on request.
        self._spawn(Child("redis", argv, dict(self.env), restart=True, role="redis"))
        if not wait_until(lambda: redis_answers(self.redis_url), 15):
            self.log.error("fatal_error", reason="redis_did_not_start", binary=binary)
            return False
        self.log.info("redis_started", binary=binary, redis_url=redact_url(self.redis_url))
        return True

    def start_replay(self, path: Path) -> bool:
        port = self.args.exchange_port
        argv = [
            sys.executable,
            "-m",
            "ntplatform.cli",
            "replay-exchange",
            "--path",
            str(path),
            "--port",
            str(port),
            "--speed",
            str(self.args.speed),
        ]
        child = self._spawn(
            Child("replay-exchange", argv, dict(self.env), restart=True, role="replay-exchange")
        )
        futures = "usdm" in path.parts
        ping = "/fapi/v1/ping" if futures else "/api/v3/ping"
        ok = wait_until(lambda: http_ok(f"http://127.0.0.1:{port}{ping}") or not child.alive(), 60)
        if not ok or not child.alive():
            self.log.error("fatal_error", reason="replay_exchange_did_not_start", path=str(path))
            return False
        self.env.setdefault("NT_BINANCE_ACCOUNT", "usdm" if futures else "spot")
        if not self.env.get("SYMBOLS"):
            info_path = "/fapi/v1/exchangeInfo" if futures else "/api/v3/exchangeInfo"
            listed = replay_symbols(f"http://127.0.0.1:{port}{info_path}")
            if listed:
                self.env["SYMBOLS"] = ",".join(listed)
                self.log.info("symbols_from_replay", symbols=listed, hint="set SYMBOLS to choose")
        self.env["NT_BINANCE_HTTP_URL"] = f"http://127.0.0.1:{port}"
        self.env["NT_BINANCE_WS_URL"] = f"ws://127.0.0.1:{port}"
        return True

    def start_producers(self) -> None:
        for index, node_id in enumerate(self.node_ids(), start=1):
            env = dict(self.env)
            env["NT_NODE_ID"] = node_id
            env["NT_METRICS_PORT"] = str(self.node_port(index))
            argv = [sys.executable, "-m", "ntplatform.cli", "producer"]
            self._spawn(Child(env["NT_NODE_ID"], argv, env, restart=True, role="producer"))

    def node_ids_free(self) -> bool:
        """No running process heartbeats under our node ids on this Redis (another ``up``)."""
        in_use = nodes_in_use(self.redis_url, self.node_ids())
        if in_use:
            self.log.error(
                "fatal_error",
                reason="node_ids_in_use",
                redis_url=redact_url(self.redis_url),
                nodes=in_use,
                hint="another ntplatform up (or producer) runs these nodes on this Redis: stop it, "
                "or point REDIS_URL at another Redis",
            )
        return not in_use

    def node_ids(self) -> list[str]:
        return [f"producer-node-{index:03d}" for index in range(1, self.args.nodes + 1)]

    def start_dagster(self) -> bool:
        port = int(self.args.dagster_port)
        if not port_free(port):
            self.log.error(
                "fatal_error",
                reason="dagster_port_unavailable",
                port=port,
                hint="another Dagster may be running: stop it, or use --dagster-port N or --no-dagster",
            )
            return False
        supervisor_url = f"http://{supervisor_api.LOOPBACK}:{self.control.port}" if self.control else None
        env = dagster_processes.dagster_env(self.env, self.node_ids(), supervisor_url)
        self.log.info(
            "dagster_starting",
            url=f"http://127.0.0.1:{port}",
            dagster_home=env["DAGSTER_HOME"],
            storage="postgres" if env.get(dagster_processes.PG_URL) else "sqlite",
        )
        self._spawn(
            Child(
                "dagster-webserver", dagster_processes.webserver_argv(port), env, restart=True, role="dagster"
            )
        )
        self._spawn(
            Child("dagster-daemon", dagster_processes.daemon_argv(), dict(env), restart=True, role="dagster")
        )
        return True

    def dagster_url(self) -> str | None:
        return None if self.args.no_dagster else f"http://127.0.0.1:{self.args.dagster_port}"

    def node_port(self, index: int) -> int:
        return int(self.args.metrics_base_port) + index

    def _spawn(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        self.log.info("process_started", name=child.name, pid=child.process.pid if child.process else None)
        return child

    def print_banner(self) -> None:
        symbol = self.env.get("SYMBOLS", "BTCUSDT,ETHUSDT").split(",")[0].strip()
        cli = f"redis-cli -u {redact_url(self.redis_url)}"
        lines = [
            "",
            "ntplatform is up. Where to look:",
            f"  reports   {cli} GET report:{symbol}",
            f"  stream    {cli} XREVRANGE report:stream:{symbol} + - COUNT 1",
        ]
        for index in range(1, self.args.nodes + 1):
            port = self.node_port(index)
            lines.append(
                f"  node {index}    http://127.0.0.1:{port}/health   http://127.0.0.1:{port}/metrics"
            )
        if "NT_BINANCE_HTTP_URL" in self.env:
            lines.append(f"  exchange  {self.env['NT_BINANCE_HTTP_URL']} (replay)")
        if self.dagster_url():
            lines.append(f"  dagster   {self.dagster_url()}   (sensors, remediation runs, archive)")
            home = dagster_processes.dagster_home(self.env)
            lines.append(f"            DAGSTER_HOME={home} for the dagster command line")
        lines.append("Ctrl-C stops everything started here.\n")
        print("\n".join(lines), file=sys.stderr, flush=True)

    def start_control(self) -> bool:
        port = int(getattr(self.args, "control_port", 0) or 0)
        if not port:
            return True
        try:
            self.control = supervisor_api.ControlServer(self, port)
        except OSError as error:
            self.log.error("fatal_error", reason="control_port_unavailable", port=port, error=str(error))
            return False
        self.control.start()
        self.log.info("control_api_started", url=f"http://{supervisor_api.LOOPBACK}:{self.control.port}")
        return True

    def watch(self) -> None:
        """Restart producers and the replay exchange that exit, with backoff."""
        while not self._stopping:
            with self.lock:
                self._watch_once()
            if self.failed:
                return
            time.sleep(0.5)

    def _watch_once(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.alive() or not child.restart or child.refused:
                continue
            code = child.process.returncode if child.process else None
            if code == CONFIG_ERROR_EXIT:
                self.log.error("fatal_error", reason="child_misconfigured", name=child.name, exit_code=code)
                self.failed = True
                return
            if child.next_start == 0.0:
                delay = min(30.0, 2.0**child.restarts)
                child.next_start = now + delay
                self.log.warning("process_exited", name=child.name, exit_code=code, restart_in_s=delay)
            elif now >= child.next_start and not self.budget.allows(child.name, now):
                child.refused = True
                detail = self.budget.refusal(child.name, now)
                self.log.error(
                    "restart_refused", name=child.name, reason="flapping", detail=detail, by="watch"
                )
            elif now >= child.next_start:
                self.budget.record(child.name, now)
                child.restarts += 1
                child.next_start = 0.0
                child.start()
                self.log.info("process_restarted", name=child.name, reason="exited", restarts=child.restarts)

    def warn_overridden(self) -> None:
        """Say so when a setting ``up`` decides for each node was set (it is not used)."""
        for name, what in OVERRIDDEN.items():
            if self.env.get(name):
                self.log.warning("setting_overridden", variable=name, value=self.env[name], by=what)

    def run(self) -> int:
        self.warn_overridden()
        if not self.start_control() or not self.ensure_redis() or not self.node_ids_free():
            return 1
        path = self.replay_path()
        if path is not None and not self.start_replay(path):
            return 1
        origin = dagster_processes.ensure_control_secret(self.env, RUN_DIR)
        if origin != "configured":
            secret_file = RUN_DIR / "control_secret"
            self.log.info(
                "control_secret_reused" if origin == "reused" else "control_secret_generated",
                file=str(secret_file.resolve()),
                hint=f"NT_CONTROL_SECRET=$(cat {secret_file}) ntplatform control ...; "
                "set NT_CONTROL_SECRET to choose one",
            )
        self.start_producers()
        if not self.args.no_dagster and not self.start_dagster():
            return 1
        healthy = wait_until(self.all_healthy, 120, give_up=self.stopping_or_failed)
        if self._stopping:
            return 0
        if self.failed:
            return 1
        if healthy:
            self.print_banner()
        else:
            self.log.warning("not_healthy_yet", hint="see the producers' log lines above; /health tells why")
        self.watch()
        return 1 if self.failed else 0

    def all_healthy(self) -> bool:
        """Every producer of ours answers /health ok, and Dagster answers (when it runs)."""
        dagster = self.dagster_url()
        statuses = [health_status(self.node_port(i), node) for i, node in enumerate(self.node_ids(), start=1)]
        for node, status in zip(self.node_ids(), statuses, strict=True):
            if status and status.startswith("foreign:") and node not in self._foreign_warned:
                self._foreign_warned.add(node)
                self.log.warning(
                    "metrics_port_answered_by_another_node",
                    node_id=node,
                    answering=status.removeprefix("foreign:"),
                    hint="another fleet uses these ports: stop it, or use --metrics-base-port",
                )
        return all(s == "ok" for s in statuses) and (dagster is None or http_ok(f"{dagster}/server_info"))

    def stopping_or_failed(self) -> bool:
        """While waiting for health: children that exit are handled as in ``watch``."""
        if self._stopping:
            return True
        with self.lock:
            self._watch_once()
        return self.failed

    def stop(self, *_: object) -> None:
        self._stopping = True

    def shutdown(self) -> None:
        """Stop what was started, newest first: Dagster, the producers (together), exchange, Redis."""
        if self.control is not None:
            self.control.close()
        for role in ("dagster", "producer", "replay-exchange", "redis"):
            group = [c for c in reversed(self.children) if c.role == role and c.alive()]
            codes = supervisor_api.stop_children(group, timeout_s=15)
            for child, code in zip(group, codes, strict=True):
                self.log.info("process_stopped", name=child.name, exit_code=code)
        self.log.info("shutdown_complete")


def run(args: argparse.Namespace) -> int:
    problem = check_arguments(args) or check_settings(args, os.environ)
    if problem:
        print(f"ntplatform up: {problem}", file=sys.stderr)
        return 2
    supervisor = Supervisor(args, dict(os.environ))
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        return supervisor.run()
    finally:
        supervisor.shutdown()
