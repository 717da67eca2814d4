"""Model-based scorers with the official conventions, on transformers."""

from __future__ import annotations

from selma.metrics.base import RegisteredMetric, metrics
from selma.registry import Registry


def all_metrics() -> Registry[RegisteredMetric]:
    """The metric registry with every built-in scorer registered (their modules import lazily)."""
    import selma.metrics.clip_scores
    import selma.metrics.imagereward
    import selma.metrics.vqascore  # noqa: F401  (registering is the import's effect)

    return metrics
