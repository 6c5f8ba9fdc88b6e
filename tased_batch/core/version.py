"""The package version, in one place (the stores record it in every shard)."""

__version__ = "0.1.0"
