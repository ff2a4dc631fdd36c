"""Reading in-process Dagster results in tests."""

from __future__ import annotations

import dagster as dg


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    """The one-line reason the run failed: its one step's ``dg.Failure`` description."""
    assert not result.success
    [event] = result.get_step_failure_events()
    data = event.step_failure_data
    assert data.user_failure_data is not None, data.error.to_string() if data.error else data
    description = data.user_failure_data.description or ""
    assert "\n" not in description
    return description
