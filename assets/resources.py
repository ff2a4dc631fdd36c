"""Resources for the external systems the assets and sensors talk to; bound in ``definitions.py``.

No ``from __future__ import annotations``: Dagster reads the field annotations at runtime.
"""

import dagster as dg
import redis

from ntplatform import archive
from ntplatform.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_ARCHIVE_DIR = "data/archive"


class RedisResource(dg.ConfigurableResource):
    """The Redis that holds the reports (``REDIS_URL``; may be on another host)."""

    url: str = DEFAULT_REDIS_URL
    socket_timeout_s: float = 5.0

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=self.socket_timeout_s)


class ArchiveStorageResource(dg.ConfigurableResource):
    """Where the Parquet archive lives (``NT_ARCHIVE_DIR``): a directory or a URI such as ``s3://…``."""

    root: str = DEFAULT_ARCHIVE_DIR

    def checked_root(self, create: bool = True) -> str:
        """``root``, once it can hold the archive (created with ``create``); else a one-line failure."""
        require_root(self.root, archive.ROOT_SETTING, create)
        return self.root


def require_root(root: str, setting: str, create: bool = True) -> None:
    """``ntplatform.archive.check_root`` as a one-line ``dg.Failure`` naming ``setting`` and the value."""
    try:
        archive.check_root(root, setting, create)
    except ConfigError as error:
        raise dg.Failure(description=str(error)) from None


def require_in_range(asset: str, field: str, value: int, minimum: int, maximum: int) -> None:
    """A one-line ``dg.Failure`` naming ``asset``'s run-config ``field`` when ``value`` is out of range."""
    if not minimum <= value <= maximum:
        raise dg.Failure(
            description=f"{asset} config {field}={value}: must be an integer from {minimum} to {maximum}"
        )
