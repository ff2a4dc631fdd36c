"""Dagster sensors and the remediation jobs they launch, one module per concern (issue 5)."""
