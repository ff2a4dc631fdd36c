"""A fleet of real producer nodes over one Redis and one replay exchange, for tests and bench."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import redis

from tests.conftest import PYTHON, SHARED_DATA, ManagedProcess, free_port, python_env, start_replay_exchange

# Six symbols from the two spot recordings: the real ones and four aliases.
ALIASES = ("SOLUSDT=BTCUSDT", "XRPUSDT=BTCUSDT", "BNBUSDT=ETHUSDT", "ADAUSDT=ETHUSDT")
SYMBOLS = ("ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")


class Fleet:
    """Starts and inspects producer nodes sharing ``SYMBOLS``."""

    def __init__(self, processes: list[ManagedProcess], tmp_path: Path, redis_url: str) -> None:
        self.processes = processes
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2)
        alias_args = tuple(arg for alias in ALIASES for arg in ("--alias", alias))
        self.exchange_port = start_replay_exchange(
            processes, tmp_path, SHARED_DATA / "spot", extra_args=alias_args
        )
        self.nodes: dict[str, ManagedProcess] = {}
        self.ports: dict[str, int] = {}

    def start(self, index: int, **env: str) -> str:
        node_id = f"producer-node-{index:03d}"
        port = free_port()
        process = ManagedProcess(
            [PYTHON, "-m", "ntplatform.cli", "producer"],
            python_env(
                SYMBOLS=",".join(SYMBOLS),
                NT_NODE_ID=node_id,
                NT_METRICS_PORT=str(port),
                REDIS_URL=self.redis_url,
                NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{self.exchange_port}",
                NT_BINANCE_WS_URL=f"ws://127.0.0.1:{self.exchange_port}",
                **env,
            ),
            self.tmp_path / f"{node_id}-{len(self.processes)}.log",
        )
        self.processes.append(process)
        self.nodes[node_id] = process
        self.ports[node_id] = port
        return node_id

    def owners(self) -> dict[str, str]:
        holders = self.client.mget([f"report:writer:{s}" for s in SYMBOLS])
        return {s: h.decode() for s, h in zip(SYMBOLS, holders, strict=True) if h is not None}

    def loads(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for owner in self.owners().values():
            counts[owner] += 1
        return dict(counts)

    def fresh_writers(self, max_age_ms: int = 2000) -> dict[str, str]:
        """Symbols whose last stream entry is newer than ``max_age_ms`` (Redis time), and its writer."""
        seconds, micros = self.client.time()
        now_ms = seconds * 1000 + micros // 1000
        writers = {}
        for symbol in SYMBOLS:
            last = self.client.xrevrange(f"report:stream:{symbol}", count=1)
            if last and now_ms - int(last[0][0].split(b"-")[0]) <= max_age_ms:
                writers[symbol] = json.loads(last[0][1][b"report"])["node_id"]
        return writers

    def balanced(self, node_ids: list[str]) -> bool:
        """Every symbol fresh, written by its lease holder, owners within one of even."""
        owners, writers = self.owners(), self.fresh_writers()
        if set(owners) != set(SYMBOLS) or writers != owners or set(owners.values()) != set(node_ids):
            return False
        loads = [list(owners.values()).count(n) for n in node_ids]
        return max(loads) - min(loads) <= 1

    def heartbeats(self) -> dict[str, dict]:
        """Each live node's heartbeat (``nt:node:{NODE_ID}``), parsed."""
        return {
            key.decode().removeprefix("nt:node:"): json.loads(self.client.get(key) or b"{}")
            for key in self.client.keys("nt:node:*")
        }

    def stream(self, symbol: str) -> list[tuple[float, dict]]:
        """(Redis receive time in s, report) for every entry of a symbol's stream."""
        entries = self.client.xrange(f"report:stream:{symbol}")
        return [(int(i.split(b"-")[0]) / 1000, json.loads(f[b"report"])) for i, f in entries]

    def fencing_violations(self) -> list[str]:
        """Stream entries whose token went down, or two nodes writing under one token."""
        problems = []
        for symbol in SYMBOLS:
            highest, writer_of = 0, {}
            for _, report in self.stream(symbol):
                token, node = report["fencing_token"], report["node_id"]
                if token < highest:
                    problems.append(f"{symbol}: token {token} from {node} after {highest}")
                if writer_of.setdefault(token, node) != node:
                    problems.append(f"{symbol}: token {token} used by {writer_of[token]} and {node}")
                highest = max(highest, token)
        return problems

    def events(self, node_id: str, name: str) -> list[dict]:
        found = []
        for process in [p for p in self.processes if p.log_path.name.startswith(node_id)]:
            for line in process.output().splitlines():
                if line.startswith("{") and f'"event":"{name}"' in line:
                    found.append(json.loads(line))
        return found

    def metric(self, node_id: str, name: str) -> float:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[node_id]}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def handoff_gap_s(self, symbol: str, old: str, new: str) -> float:
        """Time between the old owner's last stream entry and the new owner's first after it."""
        entries = self.stream(symbol)
        last_old = max(t for t, r in entries if r["node_id"] == old)
        first_new = min(t for t, r in entries if r["node_id"] == new and t > last_old)
        return first_new - last_old


def wait_seconds(seconds: float) -> None:
    time.sleep(seconds)
