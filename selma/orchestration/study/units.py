"""A study's idempotent units: prompts, renders, verifier filters, LoRAs, merges and evaluation cells.
Each is keyed by the hash of its inputs through :mod:`selma.stage`, so a re-run skips what exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selma.harness.metrics import qa_metrics
from selma.orchestration.study.config import StudyConfig
from selma.orchestration.study.layout import (
    filtered_dir,
    guidance_of,
    image_dir,
    prompts_by_skill,
    study_units,
    training_data,
)


def make_prompts(
    study: StudyConfig,
    out: Path,
    *,
    locator: Any = None,
    extra_prompts: int = 0,
    progress: bool = True,
    force: bool = False,
) -> None:
    """Stage 1: skill prompts from the study's LLM backend into ``out/prompts.jsonl``."""
    from selma.harness.suites import DataLocator
    from selma.recipe.datagen.backends import make_backend
    from selma.recipe.datagen.loop import generate_prompts
    from selma.recipe.datagen.skills import resolve_skills

    if not study_units(study).renders:
        return
    settings = study.datagen
    backend = make_backend(settings.backend, settings.options(study.device))
    generate_prompts(
        resolve_skills(study.skills, locator or DataLocator.from_env()),
        study.prompts_per_skill + extra_prompts,
        backend,
        out / "prompts.jsonl",
        seed=settings.seed,
        progress=progress,
        force=force,
    )


def render_unit(
    study: StudyConfig,
    out: Path,
    ref: str,
    skill: str,
    guidance: float | None = None,
    progress: bool = False,
    force: bool = False,
) -> Path:
    """Stage 2: one model's images of one skill's training prompts (at ``guidance``: default the model's)."""
    from selma.recipe.generate import GenerationSettings, generate
    from selma.recipe.variants import resolve_variant

    prompts = prompts_by_skill(out / "prompts.jsonl")[skill][: study.prompts_per_skill]
    chosen = resolve_variant(ref, "base", workdir=out / "work")
    folder = image_dir(out, ref, skill, study.base_model, guidance)
    settings = GenerationSettings.for_variant(
        chosen,
        guidance_scale=guidance,
        seed=study.seed,
        images_per_prompt=study.train_images_per_prompt,
        dtype=study.dtype,
    )
    generate(
        prompts,
        settings,
        folder,
        lambda: chosen.load(device=study.device, dtype=study.dtype),
        batch_size=study.batch_size,
        progress=progress,
        force=force,
    )
    return folder


def filter_unit(
    study: StudyConfig, out: Path, ref: str, skill: str, recipe: str, progress: bool = False, force: bool = False
) -> Path:
    """Stage 2b: the rendered images of one skill that the recipe's verifier keeps."""
    from selma.recipe.verify import filter_images

    verifier = study.data_recipes[recipe].filter
    assert verifier is not None
    target = filtered_dir(out, ref, skill, recipe)
    source = image_dir(out, ref, skill, study.base_model, guidance_of(study, recipe))
    filter_images(
        source,
        target,
        verifier.metric,
        verifier.threshold,
        checkpoints=verifier.checkpoints,
        device=study.device,
        progress=progress,
        force=force,
    )
    return target


def train_unit(study: StudyConfig, out: Path, variant: str, progress: bool = False, force: bool = False) -> Path:
    """Stage 3: one LoRA (an expert, multi, gt or w2s), resumed from its newest checkpoint."""
    from dataclasses import replace

    from selma.models import resolve_model
    from selma.recipe.gt_shapes import render_shapes_dataset
    from selma.recipe.train import train_lora
    from selma.recipe.variants import parse_variant, variant_dir

    model = resolve_model(study.base_model)
    name = parse_variant(variant)
    kind, arg, recipe = name.kind, name.arg or "", name.recipe
    overrides: dict[str, Any] = {}
    skills = study.skills
    if kind == "expert":
        data = [str(training_data(study, out, study.base_model, arg, recipe))]
    elif kind == "multi":
        data = [str(training_data(study, out, study.base_model, s, recipe)) for s in skills]
    elif kind == "w2s":
        data = [str(training_data(study, out, arg, s, recipe)) for s in skills]
    else:
        source = study.gt[arg]
        data = source.data
        if source.shapes:
            data = [str(render_shapes_dataset(out / f"gt-{arg}", source.shapes, seed=study.seed))]
        if source.world:
            from selma.world.suite import render_training_set

            data = [
                str(
                    render_training_set(
                        out / f"gt-{arg}",
                        study.skills,
                        source.world,
                        seed=study.seed,
                        spatial_jitter=source.spatial_jitter,
                    )
                )
            ]
        overrides = {
            "image_column": source.image_column,
            "caption_column": source.caption_column,
            "limit": source.limit,
        }
    target = variant_dir(out / "work", model, variant)
    assert target is not None
    config = replace(study.train_config(), **overrides)
    train_lora(model, data, target, config, resume="latest", progress=progress, force=force)
    return target


def merge_unit(study: StudyConfig, out: Path, method: str, recipe: str | None = None, force: bool = False) -> Path:
    """Stage 4: the experts of every skill (trained under ``recipe``) merged with ``method``."""
    from selma.models import resolve_model
    from selma.recipe.merge import merge_experts
    from selma.recipe.variants import VariantName, variant_dir

    model = resolve_model(study.base_model)
    plus = VariantName("merged", method, recipe).suffix
    experts = {s: variant_dir(out / "work", model, f"expert:{s}{plus}") for s in study.skills}
    if study.lora_step is not None:
        experts = {s: d / f"checkpoint-{study.lora_step}" for s, d in experts.items() if d is not None}
    target = variant_dir(out / "work", model, f"merged:{method}{plus}")
    assert target is not None
    settings = study.merge
    merge_experts(
        model,
        {k: v for k, v in experts.items() if v is not None},
        target,
        method=method,
        weights=[settings.weights[s] for s in study.skills] if settings.weights else None,
        density=settings.density,
        seed=settings.seed,
        force=force,
    )
    return target


def requests_of(study: StudyConfig) -> list[Any]:
    """The run of every (variant, suite) cell of the study."""
    return [
        cell_request(study, variant, suite, study.lora_step) for variant in study.variants for suite in study.suites
    ]


def cell_request(study: StudyConfig, variant: str, suite: str, lora_step: int | None) -> Any:
    """The run of ``variant`` (at checkpoint ``lora_step``; ``None``: final weights) on ``suite``."""
    from selma.orchestration.pipeline import RunRequest

    return RunRequest(
        suite=suite,
        model=study.base_model,
        variant=variant,
        metrics=tuple(m for m in study.metrics if m not in qa_metrics() or m == _suite_metric(suite)),
        checkpoints=study.checkpoints,
        conventions=study.conventions,
        lora_step=lora_step,
        images_per_prompt=study.images_per_prompt,
        seed=study.seed,
        limit=study.limit,
        device=study.device,
        dtype=study.dtype,
        batch_size=study.batch_size,
    )


def _suite_metric(suite: str) -> str | None:
    from selma.harness.suites import suite_registry

    return suite_registry().get(suite).scoring


def _lora_is_current(study: StudyConfig, lora: Path, variant: str) -> bool:
    """Whether a variant's LoRA is complete for this study's settings (a changed number of steps is not)."""
    from selma.stage import read_marker

    marker = read_marker(lora)
    if marker is None or not marker.get("complete"):
        return False
    from selma.recipe.variants import parse_variant

    if parse_variant(variant).kind == "merged":
        return True
    if marker.get("record", {}).get("steps", 0) < study.train_config().max_train_steps:
        return False
    return (
        study.lora_step is None
        or (lora / f"checkpoint-{study.lora_step}" / "pytorch_lora_weights.safetensors").is_file()
    )


def plan_study(study: StudyConfig, out: Path, locator: Any) -> list[dict[str, Any]]:
    """One row per (variant, suite) cell: whether its LoRA exists and what its run would do."""
    from dataclasses import asdict

    from selma.models import resolve_model
    from selma.orchestration.pipeline import plan_run
    from selma.recipe.variants import variant_dir

    model = resolve_model(study.base_model)
    rows = []
    for request in requests_of(study):
        lora = variant_dir(out / "work", model, request.variant)
        built = lora is None or _lora_is_current(study, lora, request.variant)
        row: dict[str, Any] = {"variant": request.variant, "suite": request.suite, "lora_built": built}
        if built:
            row["run"] = asdict(plan_run(request, locator, workdir=out / "work", out_root=out / "runs"))
        else:
            row["run"] = None
        rows.append(row)
    return rows


def evaluate_cell(study: StudyConfig, out: Path, locator: Any, request: Any) -> dict[str, Any]:
    """Stage 5: one (variant, suite) evaluation, cached by hash."""
    from selma.orchestration.pipeline import run_variant

    return run_variant(request, locator, workdir=out / "work", out_root=out / "runs")
