"""Model-based scorers with the official conventions, on transformers."""

from __future__ import annotations

from selma.harness.metrics.base import MetricInfo, RegisteredMetric, metrics
from selma.registry import Registry


def all_metrics() -> Registry[RegisteredMetric]:
    """The metric registry with every built-in scorer and every plugin's registered (their models load lazily)."""
    import selma.harness.metrics.clip_scores
    import selma.harness.metrics.imagereward
    import selma.harness.metrics.qa
    import selma.harness.metrics.vqascore  # noqa: F401  (registering is the import's effect; plugins add theirs)

    return metrics


def metric_info(name: str) -> MetricInfo:
    """The registered description of metric ``name`` (an unknown name is an error listing the metrics)."""
    return all_metrics().get(name).info


def qa_metrics() -> list[str]:
    """The names of the question-answer metrics."""
    registry = all_metrics()
    return [name for name in registry if registry.get(name).info.kind == "qa"]


def higher_is_better(name: str) -> bool:
    """The direction of metric ``name`` as registered (an unregistered name is taken as higher-better)."""
    registry = all_metrics()
    return registry.get(name).info.higher_is_better if name in registry else True


def metric_heading(name: str) -> str:
    """How tables name metric ``name``: its display name and direction (``DSG ↑``); an unregistered name as is."""
    registry = all_metrics()
    if name not in registry:
        return name
    info = registry.get(name).info
    return f"{info.display_name} {'↑' if info.higher_is_better else '↓'}"
