"""The one place that assembles the Dagster code location: assets/, sensors/, jobs, resources.

``workspace.yaml`` points here. Resources are bound once, below, from the environment:
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and ``NT_ARCHIVE_DIR`` (default
``data/archive``; a URI such as ``s3://bucket/archive`` works through pyarrow filesystems).
"""

from __future__ import annotations

import os

import dagster as dg

from assets import archive
from assets.resources import DEFAULT_ARCHIVE_DIR, DEFAULT_REDIS_URL, ArchiveStorageResource, RedisResource


def _redis_url() -> str | dg.EnvVar:
    # The URL may carry a password: read through EnvVar so Dagster never stores or shows it.
    return dg.EnvVar("REDIS_URL") if os.environ.get("REDIS_URL") else DEFAULT_REDIS_URL


defs = dg.Definitions(
    assets=[archive.report_archive],
    jobs=[archive.archive_reports],
    schedules=[archive.archive_reports_schedule],
    resources={
        "redis_db": RedisResource(url=_redis_url()),
        "archive_storage": ArchiveStorageResource(
            root=os.environ.get("NT_ARCHIVE_DIR") or DEFAULT_ARCHIVE_DIR
        ),
    },
)
