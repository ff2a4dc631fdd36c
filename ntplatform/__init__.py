"""ntplatform: real-time market analytics platform (pure core and CLI)."""

__version__ = "0.1.0"
