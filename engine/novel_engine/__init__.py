"""NovelEngine: a deterministic multi-agent narrative simulation service."""

__version__ = "0.1.0"
