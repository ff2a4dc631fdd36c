"""Redis key names (SPEC section 4). The only place they are spelled out."""

from __future__ import annotations

REPORT_FIELD = "report"  # field name of each report-stream entry


def node_key(node_id: str) -> str:
    return f"nt:node:{node_id}"


def writer_key(symbol: str) -> str:
    return f"report:writer:{symbol}"


def token_key(symbol: str) -> str:
    return f"report:writer:token:{symbol}"


def report_key(symbol: str) -> str:
    return f"report:{symbol}"


def stream_key(symbol: str) -> str:
    return f"report:stream:{symbol}"
