"""Studies: a YAML names a base model, the SELMA variants to build, suites and metrics.

``selma-bench study FILE`` builds whatever is missing — skill prompts, base-model images, one LoRA
per skill, the multi-skill LoRA, ground-truth and weak-to-strong LoRAs, merges — then runs every
variant on every suite (``run``: generation and scores cached by hash) and writes one comparison
table. Every cell is an idempotent unit keyed by the hash of its inputs, so an interrupted study
restarts where it stopped and a finished one is a cache hit.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selma.errors import DataInputError, SelmaError
from selma.harness.metrics import metric_heading, qa_metrics
from selma.recipe.train import TrainConfig

_TRAIN_FIELDS = set(TrainConfig.__dataclass_fields__)
_POSITIVE_TRAIN = {
    "rank",
    "alpha",
    "learning_rate",
    "train_batch_size",
    "gradient_accumulation_steps",
    "max_train_steps",
    "checkpointing_steps",
    "resolution",
}


class DatagenSection(BaseModel):
    """Stage 1 settings (see ``selma-bench datagen``)."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "offline"
    """An LLM backend's registered name (``selma.recipe.datagen.backends``)."""
    llm: str | None = None
    base_url: str | None = None
    completions: bool = False
    max_tokens: int = Field(3072, ge=1)
    seed: int = 0

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        from selma.recipe.datagen.backends import backends

        return _known("LLM backend", [value], backends.names())[0]

    def options(self, device: str) -> Any:
        """The backend's settings (:class:`selma.recipe.datagen.backends.BackendOptions`)."""
        from selma.recipe.datagen.backends import BackendOptions

        return BackendOptions(self.llm, self.base_url, self.completions, self.max_tokens, device)


class GtSource(BaseModel):
    """A ground-truth dataset: rendered shapes (offline), the shapes world's renderer, or image-text data
    that ``datasets`` loads.
    """

    model_config = ConfigDict(extra="forbid")

    shapes: int | None = Field(None, description="render this many shape images (offline)")
    world: int | None = Field(
        None, description="render this many exact shapes-world scenes per world skill of the study"
    )
    spatial_jitter: int | None = Field(
        None,
        ge=0,
        le=3,
        description="world: spatial scenes in canonical layouts, moved by at most this many pixels (the shipped "
        "world models' training data: 0); unset: anywhere the relation holds",
    )
    data: list[str] = Field(default_factory=list, description="image folders or datasets sources")
    image_column: str = "image"
    caption_column: str = "text"
    limit: int | None = None


class DataFilter(BaseModel):
    """A verifier: keep a generated training image when a per-image metric scores it at or above a threshold."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="a per-image metric (`selma-bench metrics`): shapes-dsg in the world, vqascore")
    threshold: float = Field(description="the lowest score kept, on the metric's own scale")
    checkpoints: dict[str, str] = Field(default_factory=dict, description="the metric's checkpoint roles")

    @field_validator("metric")
    @classmethod
    def _per_image(cls, value: str) -> str:
        from selma.harness.metrics import all_metrics

        registry = all_metrics()
        per_image = [name for name in registry if registry.get(name).info.kind == "image"]
        return _known("per-image metric", [value], per_image)[0]


class DataRecipe(BaseModel):
    """How the generated training images of a ``<variant>+<recipe>`` are rendered and chosen."""

    model_config = ConfigDict(extra="forbid")

    guidance_scale: float | None = Field(
        None, gt=0, description="classifier-free guidance of the training images (default: the model's own)"
    )
    filter: DataFilter | None = Field(None, description="keep only the images a verifier accepts")


class SelectionSection(BaseModel):
    """Checkpoint selection on held-out prompts beside selection on the test suite, so that the bias of
    picking a checkpoint by its benchmark score is a measured number.
    """

    model_config = ConfigDict(extra="forbid")

    validation_suite: str = Field(description="held-out prompts to select on (e.g. shapes-val)")
    variants: list[str] = Field(description="trained variants whose saved checkpoints are compared")

    @field_validator("validation_suite")
    @classmethod
    def _suite(cls, value: str) -> str:
        from selma.harness.suites import suite_registry

        return _known("suite", [value], suite_registry().names())[0]


def _known(kind: str, values: list[str], known: list[str]) -> list[str]:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown[0]!r} (known: {', '.join(known)})")
    return values


class StudyConfig(BaseModel):
    """A study, as written in its YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    base_model: str
    skills: list[str]
    prompts_per_skill: int = Field(1000, ge=1)
    datagen: DatagenSection = Field(default_factory=DatagenSection)
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields to override")
    gt: dict[str, GtSource] = Field(default_factory=dict)
    weak_models: list[str] = Field(default_factory=list)
    data_recipes: dict[str, DataRecipe] = Field(
        default_factory=dict, description="named ways to render or filter training images, used as <variant>+<name>"
    )
    variants: list[str] = Field(min_length=1, description="what to build and evaluate: base, expert:<skill>, ...")
    suites: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    checkpoints: dict[str, dict[str, str]] = Field(default_factory=dict)
    conventions: dict[str, str] = Field(
        default_factory=dict, description="scoring convention per QA metric (default: the official one)"
    )
    selection: SelectionSection | None = Field(
        None, description="compare every saved checkpoint of some variants on held-out and test prompts"
    )
    checkpoint: Literal["final"] | int = Field(
        "final",
        description="which weights of each trained LoRA the variants use: the final ones, or checkpoint-<N> "
        "(a fixed step); never chosen on the test suites",
    )
    limit: int | None = Field(None, description="evaluate on the first N prompts of each suite")
    images_per_prompt: int = 1
    train_images_per_prompt: int = Field(1, ge=1, description="images the base model renders per training prompt")
    batch_size: int = Field(4, ge=1, description="generation batch size")
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="the dtype every image is rendered in (training and evaluation; float16 on a GPU)"
    )
    paper: str | None = Field(None, description="the paper table this study reproduces (leaderboards/)")
    compute: str = Field("", description="a human estimate of the compute, shown by `reproduce --list`")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        from selma.io import check_safe_name

        try:
            return check_safe_name(value, "study name")
        except SelmaError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("train")
    @classmethod
    def _train_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        from pydantic import TypeAdapter

        unknown = set(value) - _TRAIN_FIELDS
        if unknown:
            raise ValueError(f"unknown training setting {sorted(unknown)[0]!r}")
        try:
            TypeAdapter(TrainConfig).validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, error['loc']))}: {error['msg']}, got {error['input']!r}") from None
        positive = [k for k, v in value.items() if k in _POSITIVE_TRAIN and (v is None or v <= 0)]
        if positive:
            raise ValueError(f"{positive[0]}: expected a positive number, got {value[positive[0]]!r}")
        return value

    @field_validator("checkpoints")
    @classmethod
    def _checkpoint_roles(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        from selma.harness.metrics.vqa import vqa_spec

        for metric, roles in value.items():
            if "vqa" in roles:
                try:
                    vqa_spec(roles["vqa"])
                except SelmaError as exc:
                    raise ValueError(f"{metric}.vqa: {exc}") from None
        return value

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        from selma.recipe.datagen.skills import skill_names

        return _known("skill", value, skill_names())

    @field_validator("suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        from selma.harness.suites import suite_registry

        return _known("suite", value, suite_registry().names())

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        from selma.harness.metrics import all_metrics

        return _known("metric", value, all_metrics().names())

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_value(cls, value: Any) -> Any:
        if value != "final" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"expected 'final' or a checkpoint step (an integer), got {value!r}")
        return value

    @field_validator("conventions")
    @classmethod
    def _conventions(cls, value: dict[str, str]) -> dict[str, str]:
        from selma.harness.scoring.conventions import conventions

        for metric, name in value.items():
            _known("convention", [name], conventions.names())
            if conventions.get(name).metric != metric:
                raise ValueError(f"convention {name!r} scores {conventions.get(name).metric}, not {metric}")
        return value

    @model_validator(mode="after")
    def _checkpoint(self) -> StudyConfig:
        if self.checkpoint != "final":
            config = self.train_config()
            if self.checkpoint % config.checkpointing_steps or not 0 < self.checkpoint <= config.max_train_steps:
                raise ValueError(
                    f"checkpoint: {self.checkpoint} is not a saved step (every {config.checkpointing_steps} "
                    f"up to {config.max_train_steps})"
                )
        return self

    @property
    def lora_step(self) -> int | None:
        """The checkpoint step the variants use, or ``None`` for the final weights."""
        return None if self.checkpoint == "final" else int(self.checkpoint)

    @model_validator(mode="after")
    def _variants(self) -> StudyConfig:
        from selma.recipe.merge import METHODS
        from selma.recipe.variants import parse_variant

        for variant in self.variants:
            try:
                name = parse_variant(variant)
            except SelmaError as exc:
                raise ValueError(f"variants: {exc}") from None
            kind, arg = name.kind, name.arg
            if name.recipe and name.recipe not in self.data_recipes:
                raise ValueError(f"variants: {variant!r} needs data_recipes.{name.recipe}")
            if kind == "expert" and arg not in self.skills:
                raise ValueError(f"variants: {variant!r} names a skill not in skills")
            if kind == "gt" and arg not in self.gt:
                raise ValueError(f"variants: {variant!r} needs gt.{arg}")
            if kind == "w2s" and arg not in self.weak_models:
                raise ValueError(f"variants: {variant!r} needs {arg!r} in weak_models")
            if kind == "merged" and arg and arg not in METHODS:
                raise ValueError(f"variants: {variant!r}: unknown merge method {arg!r} (known: {', '.join(METHODS)})")
        return self

    @model_validator(mode="after")
    def _selection(self) -> StudyConfig:
        if self.selection is None:
            return self
        if not self.suites:
            raise ValueError("selection: needs the study's test suites (suites)")
        from selma.recipe.variants import parse_variant

        for variant in self.selection.variants:
            if variant not in self.variants or parse_variant(variant).kind in ("base", "merged"):
                raise ValueError(f"selection.variants: {variant!r} is not a trained variant of the study")
        if self.train_config().checkpoints_total_limit is not None:
            raise ValueError("selection: needs every checkpoint kept; remove train.checkpoints_total_limit")
        return self

    def checkpoint_steps(self) -> list[int]:
        """The steps at which every trained LoRA of the study saves a checkpoint."""
        config = self.train_config()
        return list(range(config.checkpointing_steps, config.max_train_steps + 1, config.checkpointing_steps))

    def train_config(self) -> TrainConfig:
        """The training settings: SELMA's defaults for the base model's family (SDXL's differ) with this
        study's overrides.
        """
        from selma.models import resolve_model

        return TrainConfig.for_model(resolve_model(self.base_model), **self.train)


def load_study(path: Path) -> StudyConfig:
    """Read and validate a study YAML; every problem names the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataInputError(f"cannot read the study ({exc})", path=path) from None
    if not isinstance(raw, dict):
        raise DataInputError("expected a mapping of study settings", path=path)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        raise DataInputError(message, path=path, field=key) from None


def _prompts_by_skill(prompt_file: Path) -> dict[str, list[Any]]:
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
        plus = f"+{name.recipe}" if name.recipe else ""
        if name.kind == "merged":
            merges[(name.arg or "paper", name.recipe)] = None
            trainings.update({f"expert:{s}{plus}": None for s in study.skills})
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
    renders = {(ref, skill, _guidance(study, recipe)): None for ref, skill, recipe in data}
    filters = [(ref, skill, r) for ref, skill, r in data if r is not None and study.data_recipes[r].filter]
    cells = [(v, s) for v in study.variants for s in study.suites]
    return StudyUnits(list(renders), filters, ordered, sorted(merges, key=str), cells)


def _guidance(study: StudyConfig, recipe: str | None) -> float | None:
    return study.data_recipes[recipe].guidance_scale if recipe else None


def training_data(study: StudyConfig, out: Path, ref: str, skill: str, recipe: str | None) -> Path:
    """The folder a LoRA trained on ``ref``'s images of ``skill`` under ``recipe`` reads."""
    if recipe and study.data_recipes[recipe].filter:
        return filtered_dir(out, ref, skill, recipe)
    return image_dir(out, ref, skill, study.base_model, _guidance(study, recipe))


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

    prompts = _prompts_by_skill(out / "prompts.jsonl")[skill][: study.prompts_per_skill]
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
    source = image_dir(out, ref, skill, study.base_model, _guidance(study, recipe))
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
    from selma.recipe.variants import variant_dir

    model = resolve_model(study.base_model)
    plus = f"+{recipe}" if recipe else ""
    experts = {s: variant_dir(out / "work", model, f"expert:{s}{plus}") for s in study.skills}
    if study.lora_step is not None:
        experts = {s: d / f"checkpoint-{study.lora_step}" for s, d in experts.items() if d is not None}
    target = variant_dir(out / "work", model, f"merged:{method}{plus}")
    assert target is not None
    merge_experts(model, {k: v for k, v in experts.items() if v is not None}, target, method=method, force=force)
    return target


def _requests(study: StudyConfig) -> list[Any]:
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
    if variant.startswith("merged"):
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
    for request in _requests(study):
        lora = variant_dir(out / "work", model, request.variant)
        built = lora is None or _lora_is_current(study, lora, request.variant)
        row: dict[str, Any] = {"variant": request.variant, "suite": request.suite, "lora_built": built}
        if built:
            row["run"] = asdict(plan_run(request, locator, workdir=out / "work", out_root=out / "runs"))
        else:
            row["run"] = None
        rows.append(row)
    return rows


def execute(
    units: list[Callable[[], Any]],
    launcher: str | None,
    folder: Path,
    params: dict[str, Any],
    *,
    desc: str | None = None,
    progress: bool = False,
) -> list[Any]:
    """Run independent units here (``launcher=None``, with a progress bar named ``desc``) or as a submitit
    job array.

    ``launcher`` is a submitit cluster: ``slurm`` (one Slurm array per stage), ``local`` (subprocesses
    on this machine) or ``debug`` (in this process). ``params`` go to ``update_parameters``.
    """
    if launcher is None or not units:
        from tqdm.auto import tqdm

        return [unit() for unit in tqdm(units, desc=desc, unit="unit", disable=not progress or not units)]
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(unit) for unit in units]
    return [job.result() for job in jobs]


def evaluate_cell(study: StudyConfig, out: Path, locator: Any, request: Any) -> dict[str, Any]:
    """Stage 5: one (variant, suite) evaluation, cached by hash."""
    from selma.orchestration.pipeline import run_variant

    return run_variant(request, locator, workdir=out / "work", out_root=out / "runs")


def run_study(
    study: StudyConfig,
    out: Path,
    locator: Any,
    *,
    progress: bool = True,
    launcher: str | None = None,
    launcher_params: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build what is missing, run every cell, and write ``comparison.md``/``comparison.csv``/``study.json``.
    ``force``: a stage output made with other settings is replaced (by default it is refused, naming them).

    With a ``launcher`` every stage's units (renders, LoRAs, merges, cells) are submitted as one job
    array; a stage starts when the previous one has finished.
    """
    import pandas as pd

    from selma.harness.suites import load_suite
    from selma.results.store import make_provenance, now

    started = now()
    for suite in study.suites:  # missing suite data fails before any model work
        load_suite(suite, locator)
    units = study_units(study)
    params = launcher_params or {}
    folder = out / "jobs"
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    make_prompts(study, out, locator=locator, progress=progress, force=force)
    timings["datagen"] = round(time.perf_counter() - clock, 2)
    stages = (
        (
            "generate",
            [
                partial(render_unit, study, out, ref, skill, guidance, force=force)
                for ref, skill, guidance in units.renders
            ],
        ),
        (
            "verify",
            [partial(filter_unit, study, out, ref, skill, recipe, force=force) for ref, skill, recipe in units.filters],
        ),
        ("train", [partial(train_unit, study, out, variant, force=force) for variant in units.trainings]),
        ("merge", [partial(merge_unit, study, out, method, recipe, force=force) for method, recipe in units.merges]),
    )
    for stage, work in stages:
        clock = time.perf_counter()
        execute(work, launcher, folder, params, desc=f"study {stage}", progress=progress)
        timings[stage] = round(time.perf_counter() - clock, 2)
    requests = [dataclasses.replace(r, force=force) for r in _requests(study)]
    clock = time.perf_counter()
    cells = [partial(evaluate_cell, study, out, locator, r) for r in requests]
    results = execute(cells, launcher, folder, params, desc="study evaluate", progress=progress)
    timings["evaluate"] = round(time.perf_counter() - clock, 2)
    built = {"timings": timings}
    rows = []
    for request, result in zip(requests, results, strict=True):
        for summary in result["summaries"]:
            low, high = summary["ci"]["score"]
            rows.append(
                {
                    "variant": request.variant,
                    "suite": request.suite,
                    "metric": summary["metric"],
                    "score": round(summary["score"], 3),
                    "ci_low": round(low, 3),
                    "ci_high": round(high, 3),
                    "n_prompts": summary["n_prompts"],
                    "run": result["dir"],
                    "score_run": result["score_dirs"][summary["metric"]],
                }
            )
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="variant", columns=["suite", "metric"], values="score", sort=False)
    wide.columns = [f"{suite}/{metric_heading(metric)}" for suite, metric in wide.columns]
    wide = wide.reindex(study.variants)
    (out / "comparison.md").write_text(f"# {study.name}\n\n{wide.to_markdown()}\n", encoding="utf-8")
    table.to_csv(out / "comparison.csv", index=False)
    record = {
        "study": study.model_dump(),
        "rows": rows,
        "timings_s": built["timings"],
        "provenance": make_provenance(study.model_dump(), {}, seed=study.seed, started_at=started).model_dump(),
    }
    if study.selection is not None:
        from selma.orchestration.selection import select_checkpoints

        clock = time.perf_counter()
        record["selection"] = select_checkpoints(study, out, locator, launcher, folder, params)
        timings["selection"] = round(time.perf_counter() - clock, 2)
    if study.paper:
        from selma.reporting.paper import beside_paper

        joined = pd.DataFrame(beside_paper(rows, study.paper, study.base_model)).drop(columns=["run", "score_run"])
        (out / "paper.md").write_text(
            f"# {study.name}: measured beside {study.paper}\n\n{joined.to_markdown(index=False)}\n", encoding="utf-8"
        )
        record["paper"] = joined.to_dict(orient="records")
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return {"rows": rows, "table": wide}
