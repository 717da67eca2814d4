"""Named scoring conventions of the question-answer metrics, each reproduced from its reference code.

A convention fixes everything between a VQA model's raw answers and the reported number: how an
answer is mapped onto a question's choices, what happens to a prompt without answers, how
dependencies zero a question, how questions and prompts are averaged, what the breakdown is, and
which VQA model (with its prompt) answers by default. The official convention of each metric is
its default; SELMA's own ways of computing DSG and TIFA are selectable by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selma.errors import SelmaError
from selma.registry import Registry


@dataclass(frozen=True)
class QAConvention:
    """How one question-answer metric turns answers into scores."""

    name: str
    """Registry name, recorded in every result (``dsg``, ``dsg-selma``, ``tifa``, ``tifa-selma``)."""
    metric: str
    """The question-answer metric it scores (a suite's ``scoring`` names it)."""
    title: str
    """One line for ``selma-bench metrics`` and tables."""
    reference: str
    """Repository @ commit and file(s) the rules are ported from."""
    matcher: str
    """Answer-to-choice mapping (``exact``: the answer must equal a choice; ``sbert``: TIFA's)."""
    missing_prompts: Literal["zero", "skip"]
    """A prompt without any answer counts 0 (DSG) or is left out (TIFA, SELMA's scripts)."""
    dependencies: Literal["raw", "inplace", "none"]
    """``raw``: a question is zeroed when a parent's raw score is 0 (DSG, one level);
    ``inplace``: SELMA's loop, zeroing in question order so zeros cascade down earlier parents;
    ``none``: no dependency rule."""
    aggregate: Literal["macro", "micro"]
    """The headline: mean over prompts of per-prompt means, or mean over all questions."""
    categories: Literal["prompt", "detailed"]
    """The breakdown: by prompt category (macro) or by the questions' detailed type (micro)."""
    vqa: str
    """The VQA model (registry name) that answers by default; its prompt is part of the convention."""
    official: bool
    """Whether this is the metric's official convention (the default)."""
    notes: str = ""
    """What a user should know (deviations, models without a port)."""


conventions: Registry[QAConvention] = Registry("scoring convention")
for _convention in (
    QAConvention(
        name="dsg",
        metric="dsg",
        title="DSG as in DSG: per-prompt mean with the one-level dependency rule, mean over prompts",
        reference="j-min/DSG @ 7330119: dsg/vqa_utils.py (calc_vqa_score), dsg/data_utils.py, "
        "scripts/t2i_eval_dsg1k.py",
        matcher="exact",
        missing_prompts="zero",
        dependencies="raw",
        aggregate="macro",
        categories="prompt",
        vqa="instructblip-vicuna-7b",
        official=True,
        notes="DSG's published numbers use PaLI-17B (not public); InstructBLIP with DSG's settings is its open "
        "alternative",
    ),
    QAConvention(
        name="dsg-selma",
        metric="dsg",
        title="DSG as in SELMA: dependencies zeroed in place in CSV order, micro mean over all questions, "
        "breakdown per category_detailed",
        reference="jialuli-luka/SELMA @ dc691fa: DSG/evaluation.py",
        matcher="exact",
        missing_prompts="skip",
        dependencies="inplace",
        aggregate="micro",
        categories="detailed",
        vqa="mplug-large",
        official=False,
        notes="SELMA answered with mPLUG-large, which has no transformers port: re-score its answers "
        "(`selma-bench rescore --convention dsg-selma`) or name another VQA model",
    ),
    QAConvention(
        name="tifa",
        metric="tifa",
        title="TIFA as in TIFA: free-form answers mapped to a choice by SBERT, per-prompt accuracy, mean over prompts",
        reference="Yushi-Hu/tifa @ 8e37050: tifascore/tifa_score.py, tifascore/mc_sbert.py, tifascore/vqa_models.py",
        matcher="sbert",
        missing_prompts="skip",
        dependencies="none",
        aggregate="macro",
        categories="prompt",
        vqa="blip2-flant5-xl",
        official=True,
        notes="TIFA recommends mPLUG-large (no transformers port); BLIP-2 FlanT5-XL with TIFA's own prompts "
        "is one of its supported answerers",
    ),
    QAConvention(
        name="tifa-selma",
        metric="tifa",
        title="TIFA as in SELMA (TIFA^BLIP2): BLIP-2 FlanT5-XL prompted 'Question: {q} Options: {choices} Answer:'",
        reference="jialuli-luka/SELMA @ dc691fa: TIFA/tifa_test.py, TIFA/tifascore/vqa_models.py",
        matcher="sbert",
        missing_prompts="skip",
        dependencies="none",
        aggregate="macro",
        categories="prompt",
        vqa="blip2-flant5-xl-selma",
        official=False,
    ),
):
    conventions.add(_convention.name, _convention)


def default_convention(metric: str) -> QAConvention:
    """The official convention of a question-answer metric."""
    found = [conventions.get(n) for n in conventions if conventions.get(n).metric == metric]
    official = [c for c in found if c.official]
    if not official:
        raise SelmaError(
            f"metric {metric!r} has no official convention: register a QAConvention with metric={metric!r}, "
            "official=True (selma.harness.scoring.conventions)"
        )
    return official[0]


def resolve_convention(metric: str, name: str | None) -> QAConvention:
    """The convention ``name`` (default: the metric's official one), checked to belong to ``metric``."""
    if name is None:
        return default_convention(metric)
    convention = conventions.get(name)
    if convention.metric != metric:
        raise SelmaError(f"convention {name!r} scores {convention.metric}, not {metric}")
    return convention
