"""Resources for the external systems the assets and sensors talk to; bound in ``definitions.py``.

No ``from __future__ import annotations``: Dagster reads the field annotations at runtime.
"""

import dagster as dg
import redis

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
