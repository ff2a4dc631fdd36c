"""Rendezvous (highest-random-weight) ownership of symbols by nodes, bounded and sticky.

Every node computes the same assignment from the same inputs (symbols, live nodes,
current owners), so no node needs to ask another. Each (node, symbol) pair has a
pseudo-random weight in [0, 1). Plain HRW balances only on average; to keep every
node within one symbol of even there are exactly as many places as symbols (every node
``floor(symbols / nodes)``, the first nodes to fill up one more). Placement runs in
two passes:

1. keep: current owners that are still live keep their symbols while they have room,
   strongest first by weight times ``1 + sticky``; a node over its quota (because a
   node joined) gives up its weakest symbols;
2. place: every other symbol goes to its highest-weight node that still has room,
   strongest pairs first.

So ownership moves only when membership changes: a node that leaves hands out just its
own symbols, a node that joins takes about ``1 / nodes`` of them, and recomputing with
nothing changed moves nothing (no flapping).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

_SCALE = float(1 << 64)


def weight(node_id: str, symbol: str) -> float:
    """Deterministic pseudo-random weight of ``node_id`` for ``symbol``, in [0, 1)."""
    digest = hashlib.blake2b(f"{node_id}\x00{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class _Places:
    """Per-node quotas: ``base`` each, and ``extra`` nodes may take one more."""

    def __init__(self, nodes: list[str], symbols: int) -> None:
        self.base, self.extra = divmod(symbols, len(nodes))
        self.load = dict.fromkeys(nodes, 0)

    def take(self, node: str) -> bool:
        load = self.load[node]
        if load < self.base:
            self.load[node] = load + 1
            return True
        if load == self.base and self.extra > 0:
            self.extra -= 1
            self.load[node] = load + 1
            return True
        return False


def assign(
    symbols: Iterable[str],
    nodes: Iterable[str],
    current: Mapping[str, str] | None = None,
    sticky: float = 0.0,
) -> dict[str, str]:
    """Map each symbol to one of ``nodes``; empty when there are no nodes."""
    node_list = sorted(set(nodes))
    symbol_list = sorted(set(symbols))
    if not node_list or not symbol_list:
        return {}
    live = set(node_list)
    owned = {s: o for s, o in (current or {}).items() if o in live and s in symbol_list}
    places = _Places(node_list, len(symbol_list))
    result: dict[str, str] = {}
    kept = sorted(((weight(o, s) * (1.0 + sticky), s, o) for s, o in owned.items()), reverse=True)
    for _, symbol, node in kept:
        if places.take(node):
            result[symbol] = node
    pairs = sorted(
        ((weight(n, s), s, n) for s in symbol_list if s not in result for n in node_list), reverse=True
    )
    for _, symbol, node in pairs:
        if symbol not in result and places.take(node):
            result[symbol] = node
    return result


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> set[str]:
    """Symbols whose owner differs between two assignments."""
    return {s for s in after if before.get(s) != after[s]}
