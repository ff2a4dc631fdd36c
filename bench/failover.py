"""Benchmark: fail-over gaps of a 3-node fleet over six symbols.

For each round a node is stopped (``kill -9`` or ``SIGTERM``), the survivors take its
symbols over, the node is started again and the fleet rebalances. The gap of a symbol
is the time, by Redis's clock, between the stopped node's last report-stream entry and
the new owner's first. Prints the distribution per kind of stop.

Usage: ``python -m bench.failover [--kills 10] [--terms 5]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import ManagedProcess, RedisProcess, wait_for
from tests.integration.fleet import Fleet

NODES = ["producer-node-001", "producer-node-002", "producer-node-003"]


def _round(fleet: Fleet, index: int, sig: int) -> list[float]:
    victim = NODES[index % 3]
    symbols = [s for s, owner in fleet.owners().items() if owner == victim]
    process = fleet.nodes[victim].process
    process.send_signal(sig)
    process.wait(30)
    survivors = [n for n in NODES if n != victim]
    wait_for(lambda: fleet.balanced(survivors), 60, "survivors to take over")
    owners = fleet.owners()
    gaps = [fleet.handoff_gap_s(s, victim, owners[s]) for s in symbols]
    fleet.start(index % 3 + 1)
    wait_for(lambda: fleet.balanced(NODES), 90, "the node to rejoin")
    return gaps


def _summary(gaps: list[float]) -> dict[str, float]:
    ordered = sorted(gaps)
    return {
        "count": len(ordered),
        "min_s": round(ordered[0], 3),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
        "max_s": round(ordered[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--terms", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ntbench-failover-"))
    processes: list[ManagedProcess] = []
    redis_server = RedisProcess(tmp)
    redis_server.start()
    try:
        fleet = Fleet(processes, tmp, redis_server.url)
        for index in (1, 2, 3):
            fleet.start(index)
        wait_for(lambda: fleet.balanced(NODES), 90, "three balanced nodes")
        results: dict[str, list[float]] = {"kill -9": [], "SIGTERM": []}
        plan = [("kill -9", signal.SIGKILL)] * args.kills + [("SIGTERM", signal.SIGTERM)] * args.terms
        for number, (kind, sig) in enumerate(plan):
            started = time.monotonic()
            gaps = _round(fleet, number, sig)
            results[kind].extend(gaps)
            print(
                f"bench: round {number + 1}/{len(plan)} {kind}: gaps {[round(g, 2) for g in gaps]} "
                f"({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
            )
        print(json.dumps({kind: _summary(gaps) for kind, gaps in results.items() if gaps}, indent=2))
    finally:
        for process in reversed(processes):
            process.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
