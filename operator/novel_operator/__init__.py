"""The NovelEngine Kubernetes operator."""

from novel_engine import __version__

__all__ = ["__version__"]
