"""The metric interface: display metadata, default checkpoints, and batched scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from selma.registry import Registry


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, how it is computed and where its weights come from (shown by ``metrics``)."""

    name: str
    display_name: str
    convention: str
    higher_is_better: bool = True
    checkpoints: dict[str, str] = field(default_factory=dict)
    reference: str = ""
    notes: str = ""


class Metric(Protocol):
    """Scores (image, prompt) pairs; images are 8-bit RGB PIL images."""

    info: MetricInfo

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One score per pair."""
        ...


MetricFactory = Callable[..., Metric]


@dataclass(frozen=True)
class RegisteredMetric:
    """A metric's description and how to build it from checkpoint paths."""

    info: MetricInfo
    build: MetricFactory


metrics: Registry[RegisteredMetric] = Registry("metric")


def register_metric(info: MetricInfo) -> Callable[[MetricFactory], MetricFactory]:
    """Register a metric factory ``build(checkpoints: dict[str, str], device: str) -> Metric``."""

    def decorator(build: MetricFactory) -> MetricFactory:
        metrics.add(info.name, RegisteredMetric(info, build))
        return build

    return decorator


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
