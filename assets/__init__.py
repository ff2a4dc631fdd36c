"""Dagster assets and asset checks, one module per concern; ``definitions.py`` assembles them."""
