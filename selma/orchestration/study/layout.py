"""Where a study's stage outputs go (prompts, rendered and filtered training images) and which units its
variants need, stage by stage.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.orchestration.study.config import StudyConfig


def prompts_by_skill(prompt_file: Path) -> dict[str, list[Any]]:
    """The prompts of a study's ``prompts.jsonl``, by skill, in file order."""
    from selma.recipe.prompts import PromptItem

    by_skill: dict[str, list[PromptItem]] = defaultdict(list)
    for line in prompt_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_skill[row["skill"]].append(PromptItem(row["id"], row["text"]))
    return by_skill


def image_dir(out: Path, ref: str, skill: str, base_model: str, guidance: float | None = None) -> Path:
    """Where the training images of ``skill`` rendered by model ``ref`` (at ``guidance``, default: the
    model's own) go.
    """
    from selma.io import safe_id

    folder = "images" if ref == base_model else f"images-{safe_id(ref)}"
    return out / (folder if guidance is None else f"{folder}-g{guidance:g}") / skill


def filtered_dir(out: Path, ref: str, skill: str, recipe: str) -> Path:
    """Where the verifier-filtered training images of ``skill`` rendered by ``ref`` under ``recipe`` go."""
    from selma.io import safe_id

    return out / "filtered" / safe_id(recipe) / safe_id(ref) / skill


@dataclass(frozen=True)
class StudyUnits:
    """The study's idempotent units, stage by stage (each stage needs the previous one done)."""

    renders: list[tuple[str, str, float | None]]  # (model, skill, guidance of the training images)
    filters: list[tuple[str, str, str]]  # (model, skill, recipe)
    trainings: list[str]  # LoRA variants
    merges: list[tuple[str, str | None]]  # (merge method, recipe)
    cells: list[tuple[str, str]]  # (variant, suite)


def study_units(study: StudyConfig) -> StudyUnits:
    """Which images, filtered sets, LoRAs, merges and evaluation cells the study's variants need."""
    from selma.recipe.variants import parse_variant

    trainings: dict[str, None] = {}
    merges: dict[tuple[str, str | None], None] = {}
    data: dict[tuple[str, str, str | None], None] = {}  # (model, skill, recipe) that some LoRA trains on
    for variant in study.variants:
        name = parse_variant(variant)
        if name.kind == "merged":
            merges[(name.merge_method, name.recipe)] = None
            trainings.update({f"expert:{s}{name.suffix}": None for s in study.skills})
        elif name.kind != "base":
            trainings[variant] = None
    for training in trainings:
        name = parse_variant(training)
        if name.kind == "expert":
            data[(study.base_model, name.arg or "", name.recipe)] = None
        elif name.kind in ("multi", "w2s"):
            ref = study.base_model if name.kind == "multi" else name.arg or ""
            data.update({(ref, s, name.recipe): None for s in study.skills})
    rank = {"expert": 0, "multi": 1, "gt": 2, "w2s": 3}
    ordered = sorted(trainings, key=lambda t: (rank[parse_variant(t).kind], t))
    renders = {(ref, skill, guidance_of(study, recipe)): None for ref, skill, recipe in data}
    filters = [(ref, skill, r) for ref, skill, r in data if r is not None and study.data_recipes[r].filter]
    cells = [(v, s) for v in study.variants for s in study.suites]
    return StudyUnits(list(renders), filters, ordered, sorted(merges, key=str), cells)


def guidance_of(study: StudyConfig, recipe: str | None) -> float | None:
    """The guidance scale the training images of ``recipe`` are rendered at (``None``: the model's own)."""
    return study.data_recipes[recipe].guidance_scale if recipe else None


def training_data(study: StudyConfig, out: Path, ref: str, skill: str, recipe: str | None) -> Path:
    """The folder a LoRA trained on ``ref``'s images of ``skill`` under ``recipe`` reads."""
    if recipe and study.data_recipes[recipe].filter:
        return filtered_dir(out, ref, skill, recipe)
    return image_dir(out, ref, skill, study.base_model, guidance_of(study, recipe))
