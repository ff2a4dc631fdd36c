"""Dagster sensors and the remediation jobs they launch, one module per concern (issue 5)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg


def running_sensor(
    *, minimum_interval_seconds: int = 15, **options: Any
) -> Callable[..., dg.SensorDefinition]:
    """``dg.sensor``, running from the start, whose UI description is the function's docstring."""

    def decorate(evaluate: Callable[..., Any]) -> dg.SensorDefinition:
        return dg.sensor(
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=inspect.getdoc(evaluate),
            **options,
        )(evaluate)

    return decorate
