"""The metric interface: display metadata, default checkpoints, and batched scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from selma.registry import Registry


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, how it is computed and where its weights come from (shown by ``metrics``; tables
    read the display name and direction from here).
    """

    name: str
    display_name: str
    convention: str
    higher_is_better: bool = True
    checkpoints: dict[str, str] = field(default_factory=dict)
    reference: str = ""
    notes: str = ""
    kind: Literal["image", "qa"] = "image"
    """``image``: a score per (image, prompt); ``qa``: a suite's questions answered by a VQA model and scored
    by one of the metric's conventions (``selma.harness.scoring.conventions``)."""
    show_choices: bool = False
    """For ``qa`` metrics: whether a VQA model that can is shown each question's choices (TIFA's are
    multiple-choice; DSG's are yes/no)."""


class Metric(Protocol):
    """Scores (image, prompt) pairs; images are 8-bit RGB PIL images."""

    info: MetricInfo
    notes: list[str]  # what a run should record (e.g. prompts truncated to the token limit)

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One score per pair."""
        ...


MetricFactory = Callable[..., Metric]


@dataclass(frozen=True)
class RegisteredMetric:
    """A metric's description and how to build it from checkpoint paths (question-answer metrics are scored
    by the shared question-answer scorer instead, so they have no factory).
    """

    info: MetricInfo
    build: MetricFactory | None


metrics: Registry[RegisteredMetric] = Registry("metric")


def register_metric(info: MetricInfo) -> Callable[[MetricFactory], MetricFactory]:
    """Register a metric factory ``build(checkpoints: dict[str, str], device: str) -> Metric``."""

    def decorator(build: MetricFactory) -> MetricFactory:
        metrics.add(info.name, RegisteredMetric(info, build))
        return build

    return decorator


def register_qa_metric(info: MetricInfo) -> MetricInfo:
    """Register a question-answer metric (its conventions live in ``selma.harness.scoring.conventions``)."""
    if info.kind != "qa":
        raise ValueError(f"metric {info.name!r}: a question-answer metric needs kind='qa'")
    metrics.add(info.name, RegisteredMetric(info, None))
    return info


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def check_pairs(images: Sequence[Any], prompts: Sequence[str]) -> None:
    """Scorers take aligned, non-empty inputs: a mismatch or an empty prompt is an error naming the pair."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {index} is empty: a scorer needs the text the image was made from")


def truncation_note(metric: str, tokenizer: Any, prompts: Sequence[str], limit: int) -> str | None:
    """A note for the run when prompts exceed ``limit`` tokens (they are truncated, as the reference code does)."""
    long = [i for i, ids in enumerate(tokenizer(list(prompts)).input_ids) if len(ids) > limit]
    if not long:
        return None
    return f"{metric}: {len(long)} prompt(s) longer than {limit} tokens were truncated (first: #{long[0]})"


def load_converted_state(model: Any, converted: dict[str, Any], path: str, kind: str) -> Any:
    """Load a converted state dict; missing/unexpected keys or wrong shapes are errors naming the file."""
    expected = {k for k in model.state_dict() if not k.endswith("position_ids")}
    missing, unexpected = expected - set(converted), set(converted) - expected
    if missing or unexpected:
        raise ValueError(f"{path}: not {kind} (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    try:
        model.load_state_dict(converted, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{path}: checkpoint of the wrong shape ({str(exc).splitlines()[1][:200]})") from None
    return model.eval()
