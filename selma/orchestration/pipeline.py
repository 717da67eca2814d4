"""``selma-bench run``: one model variant on one suite, end to end — generate (cached), score (cached), table.

Images live under a folder keyed by the hash of everything that determines them, and each metric's
scores under a folder keyed by its checkpoints, so a second identical run does no model work and
``--dry-run`` can tell what is cached before anything is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.harness.metrics import metric_heading, metric_info
from selma.harness.suites import DataLocator, Suite, load_suite
from selma.io import config_hash, safe_id
from selma.recipe.generate import GenerationSettings, generate, image_set_key, plan
from selma.recipe.prompts import PromptItem
from selma.recipe.variants import Variant, resolve_variant
from selma.weights import check_weights

# Rough seconds per image at the model's default size and steps, for --dry-run estimates only.
SECONDS_PER_IMAGE = {
    ("sd1", "cuda"): 2.0,
    ("sd2", "cuda"): 3.5,
    ("sdxl", "cuda"): 7.0,
    ("sd1", "cpu"): 90.0,
    ("sd2", "cpu"): 200.0,
    ("sdxl", "cpu"): 600.0,
}
TINY_SECONDS_PER_IMAGE = 0.06  # measured here: tiny-sd1, 4 steps, 2-core CPU
SECONDS_PER_SCORE = {"cuda": 0.05, "cpu": 1.0}  # per image, or per question for dsg/tifa


@dataclass(frozen=True)
class RunRequest:
    """What to run: a model variant, a suite and metrics, with generation and scoring settings."""

    suite: str
    model: str
    variant: str = "base"
    metrics: tuple[str, ...] = ()
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    lora_step: int | None = None
    images_per_prompt: int = 1
    seed: int = 0
    limit: int | None = None
    device: str = "cpu"
    batch_size: int = 4
    fuse_lora: bool = True
    """Fuse the variant's LoRA into the weights (base speed); ``False`` keeps a live adapter."""
    dtype: str = "float32"
    """The generation dtype (``float16`` or ``bfloat16`` on a GPU); part of the images' cache key."""
    force: bool = False
    """Replace an image set made with other settings (by default it is refused, naming them); score folders
    are keyed by their content, so they never clash."""


@dataclass(frozen=True)
class RunPlan:
    """Images to render and model calls per metric, and what is already cached."""

    suite: str
    model: str
    variant: str
    n_prompts: int
    n_images: int
    images_cached: int
    images_dir: str
    metrics: dict[str, dict[str, Any]]
    estimate_s: float
    models: dict[str, str | None] = field(default_factory=dict)
    """Every scorer model the run needs (role -> local path, ``None`` where it is not on this machine)."""


def score_dir(images_dir: Path, metric: str, checkpoints: dict[str, str], convention: str | None = None) -> Path:
    """Where a metric's run over ``images_dir`` is written, keyed by its checkpoints' content and convention."""
    from selma.harness.score import checkpoint_identities

    key = config_hash({"checkpoints": checkpoint_identities(checkpoints), "convention": convention})
    return images_dir / "scores" / f"{metric}-{key[:8]}"


def default_metrics(suite: Suite) -> tuple[str, ...]:
    """A suite's own question-answer metric (dsg, tifa), if it has one."""
    return (suite.spec.scoring,) if suite.spec.scoring else ()


@dataclass(frozen=True)
class _Prepared:
    suite: Suite
    prompts: list[PromptItem]
    variant: Variant
    settings: GenerationSettings
    images_dir: Path
    metrics: tuple[str, ...]
    models: dict[str, str | None]


def _prepare(
    request: RunRequest, locator: DataLocator, workdir: Path, out_root: Path, *, strict: bool = True
) -> _Prepared:
    suite = load_suite(request.suite, locator)
    prompts = [PromptItem(safe_id(p.id), p.text) for p in suite.prompts][: request.limit]
    variant = resolve_variant(
        request.model, request.variant, workdir=workdir, step=request.lora_step, fuse=request.fuse_lora
    )
    settings = GenerationSettings.for_variant(
        variant, images_per_prompt=request.images_per_prompt, seed=request.seed, dtype=request.dtype
    )
    key = image_set_key(prompts, settings)[:12]
    name = f"{suite.name}-{safe_id(variant.model.spec.name)}-{safe_id(request.variant)}-{key}"
    metrics = request.metrics or default_metrics(suite)
    if not metrics:
        raise SelmaError(f"suite '{suite.name}' has no default metric: pass --metric (see `selma-bench metrics`)")
    check_metrics(suite, metrics, request)
    models = check_weights(
        needed_weights(suite, metrics, request),
        strict=strict,
        how="pass a local directory (--vqa-model PATH for a VQA model, --checkpoint ROLE=PATH for a metric's "
        "others), or run once online to fill the cache",
    )
    return _Prepared(suite, prompts, variant, settings, out_root / name, metrics, models)


def needed_weights(suite: Suite, metrics: tuple[str, ...], request: RunRequest) -> dict[str, str]:
    """The scorer models a run loads (``"<metric> <role>"`` -> reference): each metric's checkpoints with the
    run's overrides, a VQA model by its registered name resolved to its checkpoint (the shapes world's exact
    evaluator has none).
    """
    from selma.harness.metrics.answerer_choice import answerer_choice, other_roles
    from selma.harness.scoring.conventions import resolve_convention

    needed = {}
    for metric in metrics:
        info = metric_info(metric)
        given = request.checkpoints.get(metric, {})
        roles = {**info.checkpoints, **given}
        choice = None
        if info.kind == "qa":  # the suite's or the convention's VQA model unless the run names one
            choice = answerer_choice(given, suite, resolve_convention(metric, request.conventions.get(metric)))
        elif "vqa" in roles:  # VQAScore: its own default VQA model
            choice = answerer_choice(roles)
        if choice is not None:
            roles = {**other_roles(roles), **choice.weights}
        needed.update({f"{metric} {role}": ref for role, ref in roles.items() if ref})
    return needed


def check_metrics(suite: Suite, metrics: tuple[str, ...], request: RunRequest) -> None:
    """Every metric, convention and VQA model named exists, before anything is rendered or loaded."""
    from selma.harness.metrics.answerer_choice import answerer_choice
    from selma.harness.scoring.conventions import resolve_convention

    for metric in metrics:
        if metric_info(metric).kind == "qa":
            if suite.spec.scoring != metric:
                raise SelmaError(f"metric '{metric}' needs a suite with {metric} questions; '{suite.name}' has none")
            convention = resolve_convention(metric, request.conventions.get(metric))
            answerer_choice(request.checkpoints.get(metric, {}), suite, convention)


def plan_run(request: RunRequest, locator: DataLocator, *, workdir: Path, out_root: Path) -> RunPlan:
    """The plan of a run, without loading any model."""
    prepared = _prepare(request, locator, workdir, out_root, strict=False)
    jobs = plan(prepared.prompts, prepared.settings)
    cached = sum(1 for job in jobs if (prepared.images_dir / job.file_name).is_file())
    gpu = request.device.startswith("cuda")
    spec = prepared.variant.model.spec
    per_image = TINY_SECONDS_PER_IMAGE if spec.tiny else SECONDS_PER_IMAGE[(spec.family, "cuda" if gpu else "cpu")]
    estimate = per_image * (len(jobs) - cached)
    chosen = {p.id for p in prepared.suite.prompts[: len(prepared.prompts)]}
    metrics: dict[str, dict[str, Any]] = {}
    for metric in prepared.metrics:
        calls = len(jobs)
        if metric_info(metric).kind == "qa":
            calls = sum(1 for q in prepared.suite.questions if q.prompt_id in chosen)
        folder = score_dir(
            prepared.images_dir, metric, request.checkpoints.get(metric, {}), request.conventions.get(metric)
        )
        done = (folder / "summary.json").is_file()
        metrics[metric] = {"model_calls": 0 if done else calls, "cached": done}
        estimate += 0 if done else calls * SECONDS_PER_SCORE["cuda" if gpu else "cpu"]
    return RunPlan(
        prepared.suite.name,
        spec.name,
        request.variant,
        len(prepared.prompts),
        len(jobs),
        cached,
        str(prepared.images_dir),
        metrics,
        round(estimate, 1),
        prepared.models,
    )


def run_variant(request: RunRequest, locator: DataLocator, *, workdir: Path, out_root: Path) -> dict[str, Any]:
    """Generate what is missing, score with each metric (identical scores are reused), and tabulate."""
    from selma.harness.score import score_folder
    from selma.reporting.report import summaries_table

    prepared = _prepare(request, locator, workdir, out_root)
    generated = generate(
        prepared.prompts,
        prepared.settings,
        prepared.images_dir,
        lambda: prepared.variant.load(device=request.device, dtype=request.dtype),
        batch_size=request.batch_size,
        force=request.force,
    )
    summaries, tables, score_dirs = [], [], {}
    for metric in prepared.metrics:
        checkpoints = request.checkpoints.get(metric, {})
        convention = request.conventions.get(metric)
        score_dirs[metric] = str(score_dir(prepared.images_dir, metric, checkpoints, convention))
        summary, _, _ = score_folder(
            prepared.suite.name,
            prepared.images_dir,
            metric,
            locator,
            checkpoints=checkpoints,
            convention=convention,
            device=request.device,
            limit=request.limit,
            seed=request.seed,
            label=f"{prepared.variant.model.spec.name}/{request.variant}",
            out=Path(score_dirs[metric]),
        )
        summaries.append(json.loads(summary.model_dump_json()))
        tables.append(f"### {metric_heading(metric)}\n\n{summaries_table([summary]).to_markdown(index=False)}\n")
    (prepared.images_dir / "table.md").write_text("\n".join(tables), encoding="utf-8")
    return {
        "generated": generated,
        "summaries": summaries,
        "table": "\n".join(tables),
        "dir": str(prepared.images_dir),
        "score_dirs": score_dirs,
    }
