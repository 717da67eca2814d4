"""Studies: a YAML names a base model, the SELMA variants to build, suites and metrics.

``selma-bench study FILE`` builds whatever is missing — skill prompts, base-model images, one LoRA
per skill, the multi-skill LoRA, ground-truth and weak-to-strong LoRAs, merges — then runs every
variant on every suite (``run``: generation and scores cached by hash) and writes one comparison
table. Every cell is an idempotent unit keyed by the hash of its inputs, so an interrupted study
restarts where it stopped and a finished one is a cache hit.
"""

from __future__ import annotations

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
from selma.train import TrainConfig

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

    backend: Literal["offline", "world", "transformers", "openai"] = "offline"
    llm: str | None = None
    base_url: str | None = None
    completions: bool = False
    seed: int = 0


class GtSource(BaseModel):
    """A ground-truth dataset: rendered shapes (offline), the shapes world's renderer, or image-text data
    that ``datasets`` loads.
    """

    model_config = ConfigDict(extra="forbid")

    shapes: int | None = Field(None, description="render this many shape images (offline)")
    world: int | None = Field(
        None, description="render this many exact shapes-world scenes per world skill of the study"
    )
    data: list[str] = Field(default_factory=list, description="image folders or datasets sources")
    image_column: str = "image"
    caption_column: str = "text"
    limit: int | None = None


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
    variants: list[str]
    suites: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    checkpoints: dict[str, dict[str, str]] = Field(default_factory=dict)
    conventions: dict[str, str] = Field(
        default_factory=dict, description="scoring convention per QA metric (default: the official one)"
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
        from selma.metrics.vqa import vqa_spec

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
        from selma.datagen.skills import skill_names

        return _known("skill", value, skill_names())

    @field_validator("suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        from selma.suites import suite_registry

        return _known("suite", value, suite_registry().names())

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        from selma.metrics import all_metrics

        return _known("metric", value, [*all_metrics().names(), "dsg", "tifa"])

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_value(cls, value: Any) -> Any:
        if value != "final" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"expected 'final' or a checkpoint step (an integer), got {value!r}")
        return value

    @field_validator("conventions")
    @classmethod
    def _conventions(cls, value: dict[str, str]) -> dict[str, str]:
        from selma.scoring.conventions import conventions

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
        from selma.variants import VARIANT

        for variant in self.variants:
            match = VARIANT.match(variant)
            if not match:
                raise ValueError(f"variants: unknown variant {variant!r}")
            kind, arg = match.group("kind"), match.group("arg")
            if kind == "expert" and arg not in self.skills:
                raise ValueError(f"variants: {variant!r} names a skill not in skills")
            if kind == "gt" and arg not in self.gt:
                raise ValueError(f"variants: {variant!r} needs gt.{arg}")
            if kind == "w2s" and arg not in self.weak_models:
                raise ValueError(f"variants: {variant!r} needs {arg!r} in weak_models")
        return self

    def train_config(self) -> TrainConfig:
        """The training settings: the paper's defaults with this study's overrides."""
        return TrainConfig(**{**self.train, "seed": self.train.get("seed", 42)})


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
    from selma.prompts import PromptItem

    by_skill: dict[str, list[PromptItem]] = defaultdict(list)
    for line in prompt_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_skill[row["skill"]].append(PromptItem(row["id"], row["text"]))
    return by_skill


def _kinds(study: StudyConfig) -> dict[str, set[str | None]]:
    from selma.variants import VARIANT

    kinds: dict[str, set[str | None]] = defaultdict(set)
    for variant in study.variants:
        match = VARIANT.match(variant)
        assert match is not None
        kinds[match.group("kind")].add(match.group("arg"))
    return kinds


def image_dir(out: Path, ref: str, skill: str, base_model: str) -> Path:
    """Where the training images of ``skill`` rendered by model ``ref`` go."""
    from selma.io import safe_id

    return out / ("images" if ref == base_model else f"images-{safe_id(ref)}") / skill


@dataclass(frozen=True)
class StudyUnits:
    """The study's idempotent units, stage by stage (each stage needs the previous one done)."""

    renders: list[tuple[str, str]]  # (model, skill)
    trainings: list[str]  # LoRA variants
    merges: list[str]  # merge methods
    cells: list[tuple[str, str]]  # (variant, suite)


def study_units(study: StudyConfig) -> StudyUnits:
    """Which images, LoRAs, merges and evaluation cells the study's variants need."""
    kinds = _kinds(study)
    experts = sorted({*(a for a in kinds["expert"] if a), *(study.skills if kinds["merged"] else [])})
    skills = study.skills if (experts or kinds["multi"] or kinds["w2s"]) else []
    renders = [(study.base_model, s) for s in skills] + [(w, s) for w in sorted(kinds["w2s"]) for s in skills]
    trainings = [f"expert:{s}" for s in experts] + (["multi"] if kinds["multi"] else [])
    trainings += [f"gt:{n}" for n in sorted(kinds["gt"])] + [f"w2s:{w}" for w in sorted(kinds["w2s"])]
    merges = sorted(m or "paper" for m in kinds["merged"])
    cells = [(v, s) for v in study.variants for s in study.suites]
    return StudyUnits(renders, trainings, merges, cells)


def make_prompts(
    study: StudyConfig, out: Path, *, locator: Any = None, extra_prompts: int = 0, progress: bool = True
) -> None:
    """Stage 1: skill prompts from the study's LLM backend into ``out/prompts.jsonl``."""
    from selma.datagen.backends import backends
    from selma.datagen.run import generate_prompts
    from selma.datagen.skills import resolve_skills
    from selma.suites import DataLocator

    if not study_units(study).renders:
        return
    settings = study.datagen
    backend_class = backends.get(settings.backend)
    if settings.backend in ("offline", "world"):
        backend = backend_class()
    elif settings.backend == "transformers":
        backend = backend_class(settings.llm, device=study.device)
    else:
        backend = backend_class(settings.llm, base_url=settings.base_url, chat=not settings.completions)
    generate_prompts(
        resolve_skills(study.skills, locator or DataLocator.from_env()),
        study.prompts_per_skill + extra_prompts,
        backend,
        out / "prompts.jsonl",
        seed=settings.seed,
        progress=progress,
    )


def render_unit(study: StudyConfig, out: Path, ref: str, skill: str, progress: bool = False) -> Path:
    """Stage 2: one model's images of one skill's training prompts."""
    from selma.generate import GenerationSettings, generate
    from selma.variants import resolve_variant

    prompts = _prompts_by_skill(out / "prompts.jsonl")[skill][: study.prompts_per_skill]
    chosen = resolve_variant(ref, "base", workdir=out / "work")
    folder = image_dir(out, ref, skill, study.base_model)
    generate(
        prompts,
        GenerationSettings.for_variant(chosen, seed=study.seed, images_per_prompt=study.train_images_per_prompt),
        folder,
        lambda: chosen.load(device=study.device),
        batch_size=study.batch_size,
        progress=progress,
    )
    return folder


def train_unit(study: StudyConfig, out: Path, variant: str, progress: bool = False) -> Path:
    """Stage 3: one LoRA (an expert, multi, gt or w2s), resumed from its newest checkpoint."""
    from dataclasses import replace

    from selma.demo_data import render_shapes_dataset
    from selma.models import resolve_model
    from selma.train import train_lora
    from selma.variants import variant_dir

    model = resolve_model(study.base_model)
    kind, _, arg = variant.partition(":")
    overrides: dict[str, Any] = {}
    skills = study.skills
    if kind == "expert":
        data = [str(image_dir(out, study.base_model, arg, study.base_model))]
    elif kind == "multi":
        data = [str(image_dir(out, study.base_model, s, study.base_model)) for s in skills]
    elif kind == "w2s":
        data = [str(image_dir(out, arg, s, study.base_model)) for s in skills]
    else:
        source = study.gt[arg]
        data = source.data
        if source.shapes:
            data = [str(render_shapes_dataset(out / f"gt-{arg}", source.shapes, seed=study.seed))]
        if source.world:
            from selma.world.suite import render_training_set

            data = [str(render_training_set(out / f"gt-{arg}", study.skills, source.world, seed=study.seed))]
        overrides = {
            "image_column": source.image_column,
            "caption_column": source.caption_column,
            "limit": source.limit,
        }
    target = variant_dir(out / "work", model, variant)
    assert target is not None
    train_lora(model, data, target, replace(study.train_config(), **overrides), resume="latest", progress=progress)
    return target


def merge_unit(study: StudyConfig, out: Path, method: str) -> Path:
    """Stage 4: the experts of every skill merged with ``method``."""
    from selma.merge import merge_experts
    from selma.models import resolve_model
    from selma.variants import variant_dir

    model = resolve_model(study.base_model)
    experts = {s: variant_dir(out / "work", model, f"expert:{s}") for s in study.skills}
    if study.lora_step is not None:
        experts = {s: d / f"checkpoint-{study.lora_step}" for s, d in experts.items() if d is not None}
    target = variant_dir(out / "work", model, f"merged:{method}")
    assert target is not None
    merge_experts(model, {k: v for k, v in experts.items() if v is not None}, target, method=method)
    return target


def build_variants(study: StudyConfig, out: Path, *, extra_prompts: int = 0, progress: bool = True) -> dict[str, Any]:
    """Build every LoRA the study's variants need under ``out/work``, stage by stage, in this process.

    Returns the work folder, the base model, training and held-out prompts (``extra_prompts`` per
    skill beyond ``prompts_per_skill``) and per-stage timings.
    """
    from selma.models import resolve_model

    units = study_units(study)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    make_prompts(study, out, extra_prompts=extra_prompts, progress=progress)
    timings["datagen"] = round(time.perf_counter() - clock, 2)
    for stage, work in (
        ("generate", [lambda r=r: render_unit(study, out, *r, progress=progress) for r in units.renders]),
        ("train", [lambda v=v: train_unit(study, out, v, progress=progress) for v in units.trainings]),
        ("merge", [lambda m=m: merge_unit(study, out, m) for m in units.merges]),
    ):
        clock = time.perf_counter()
        for unit in work:
            unit()
        timings[stage] = round(time.perf_counter() - clock, 2)
    prompt_file = out / "prompts.jsonl"
    by_skill = _prompts_by_skill(prompt_file) if prompt_file.is_file() else {}
    return {
        "workdir": out / "work",
        "model": resolve_model(study.base_model),
        "train_prompts": {s: items[: study.prompts_per_skill] for s, items in by_skill.items()},
        "held_out": [item for items in by_skill.values() for item in items[study.prompts_per_skill :]],
        "timings": timings,
    }


def _requests(study: StudyConfig) -> list[Any]:
    from selma.run import RunRequest

    return [
        RunRequest(
            suite=suite,
            model=study.base_model,
            variant=variant,
            metrics=tuple(m for m in study.metrics if m not in ("dsg", "tifa") or m == _suite_metric(suite)),
            checkpoints=study.checkpoints,
            conventions=study.conventions,
            lora_step=study.lora_step,
            images_per_prompt=study.images_per_prompt,
            seed=study.seed,
            limit=study.limit,
            device=study.device,
            batch_size=study.batch_size,
        )
        for variant in study.variants
        for suite in study.suites
    ]


def _suite_metric(suite: str) -> str | None:
    from selma.suites import suite_registry

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
    from selma.run import plan_run
    from selma.variants import variant_dir

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


def execute(units: list[Callable[[], Any]], launcher: str | None, folder: Path, params: dict[str, Any]) -> list[Any]:
    """Run independent units here (``launcher=None``) or as a submitit job array.

    ``launcher`` is a submitit cluster: ``slurm`` (one Slurm array per stage), ``local`` (subprocesses
    on this machine) or ``debug`` (in this process). ``params`` go to ``update_parameters``.
    """
    if launcher is None or not units:
        return [unit() for unit in units]
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(unit) for unit in units]
    return [job.result() for job in jobs]


def run_cell(study: StudyConfig, out: Path, locator: Any, request: Any) -> dict[str, Any]:
    """Stage 5: one (variant, suite) evaluation, cached by hash."""
    from selma.run import run

    return run(request, locator, workdir=out / "work", out_root=out / "runs")


def run_study(
    study: StudyConfig,
    out: Path,
    locator: Any,
    *,
    progress: bool = True,
    launcher: str | None = None,
    launcher_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build what is missing, run every cell, and write ``comparison.md``/``comparison.csv``/``study.json``.

    With a ``launcher`` every stage's units (renders, LoRAs, merges, cells) are submitted as one job
    array; a stage starts when the previous one has finished.
    """
    import pandas as pd

    from selma.results.store import make_provenance, now
    from selma.suites import load_suite

    started = now()
    for suite in study.suites:  # missing suite data fails before any model work
        load_suite(suite, locator)
    units = study_units(study)
    params = launcher_params or {}
    folder = out / "jobs"
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    make_prompts(study, out, locator=locator, progress=progress)
    timings["datagen"] = round(time.perf_counter() - clock, 2)
    stages = (
        ("generate", [partial(render_unit, study, out, ref, skill) for ref, skill in units.renders]),
        ("train", [partial(train_unit, study, out, variant) for variant in units.trainings]),
        ("merge", [partial(merge_unit, study, out, method) for method in units.merges]),
    )
    for stage, work in stages:
        clock = time.perf_counter()
        execute(work, launcher, folder, params)
        timings[stage] = round(time.perf_counter() - clock, 2)
    requests = _requests(study)
    clock = time.perf_counter()
    results = execute([partial(run_cell, study, out, locator, r) for r in requests], launcher, folder, params)
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
    wide.columns = [f"{suite}/{metric}" for suite, metric in wide.columns]
    wide = wide.reindex(study.variants)
    (out / "comparison.md").write_text(f"# {study.name}\n\n{wide.to_markdown()}\n", encoding="utf-8")
    table.to_csv(out / "comparison.csv", index=False)
    record = {
        "study": study.model_dump(),
        "rows": rows,
        "timings_s": built["timings"],
        "provenance": make_provenance(study.model_dump(), {}, seed=study.seed, started_at=started).model_dump(),
    }
    if study.paper:
        from selma.paper import beside_paper

        joined = pd.DataFrame(beside_paper(rows, study.paper, study.base_model)).drop(columns=["run", "score_run"])
        (out / "paper.md").write_text(
            f"# {study.name}: measured beside {study.paper}\n\n{joined.to_markdown(index=False)}\n", encoding="utf-8"
        )
        record["paper"] = joined.to_dict(orient="records")
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return {"rows": rows, "table": wide}
