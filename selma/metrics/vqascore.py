"""VQAScore: P("Yes") to 'Does this figure show "{text}"? Please answer yes or no.' from a VQA model.

The probability of the first token of "Yes" at the first decoding step, on any backend of
:mod:`selma.metrics.vqa`. The reference implementation is t2v-metrics (CLIP-FlanT5, whose value is
exp(−mean cross-entropy of "Yes" + EOS), about P("Yes")); t2v-metrics 3.0 does not install beside
this package's dependencies, so its numbers are not reproduced here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selma.metrics.base import MetricInfo, check_pairs, register_metric
from selma.metrics.vqa import VQAModel, vqa_models

TEMPLATE = 'Does this figure show "{text}"? Please answer yes or no.'

INFO = MetricInfo(
    name="vqascore",
    display_name="VQAScore",
    convention=f"P(first token of 'Yes') for {TEMPLATE!r}",
    checkpoints={"vqa": "llava-1.5-7b", "model": vqa_models.get("llava-1.5-7b").checkpoint},
    reference="linzhiqiu/t2v_metrics (clip-flant5-xxl is its default model)",
)


class VQAScorer:
    """VQAScore on one VQA model."""

    def __init__(self, vqa: VQAModel) -> None:
        self.info, self.vqa = INFO, vqa
        self.notes: list[str] = []

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """P(Yes) per (image, prompt)."""
        check_pairs(images, prompts)
        return self.vqa.first_token_probability(images, [TEMPLATE.format(text=p) for p in prompts], "Yes")


@register_metric(INFO)
def build_vqascore(checkpoints: dict[str, str] | None = None, device: str = "cpu") -> VQAScorer:
    """VQAScore with the VQA model named by ``checkpoints['vqa']`` at ``checkpoints['model']``."""
    paths = {**INFO.checkpoints, **(checkpoints or {})}
    spec = vqa_models.get(paths["vqa"])
    return VQAScorer(VQAModel(spec, paths.get("model") or spec.checkpoint, device=device))
