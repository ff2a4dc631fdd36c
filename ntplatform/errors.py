"""Exceptions raised by ntplatform. Every one derives from NtPlatformError."""

from __future__ import annotations


class NtPlatformError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(NtPlatformError):
    """A setting is missing, malformed or inconsistent with another.

    The message is one line naming the variable, the value and what is allowed.
    """

    def __init__(self, variable: str, value: object, allowed: str) -> None:
        self.variable = variable
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid configuration: {variable}={value!r}: {allowed}")


class RecordingError(NtPlatformError):
    """A market-data recording cannot be read; names the file and the line."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"bad recording {where}: {reason}")


class OutputConflictError(NtPlatformError):
    """Writing would replace data that came from somewhere else; nothing was written."""


class SequenceGapError(NtPlatformError):
    """A diff-depth event does not follow the previous one: the book must be resynced."""


class LeaseLostError(NtPlatformError):
    """A write was refused because this node no longer holds the symbol's lease."""
