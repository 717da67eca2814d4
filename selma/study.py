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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selma.errors import DataInputError
from selma.train import TrainConfig

_TRAIN_FIELDS = set(TrainConfig.__dataclass_fields__)


class DatagenSection(BaseModel):
    """Stage 1 settings (see ``selma-bench datagen``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["offline", "transformers", "openai"] = "offline"
    llm: str | None = None
    base_url: str | None = None
    completions: bool = False
    seed: int = 0


class GtSource(BaseModel):
    """A ground-truth dataset: rendered shapes (offline) or image-text data that ``datasets`` loads."""

    model_config = ConfigDict(extra="forbid")

    shapes: int | None = Field(None, description="render this many shape images (offline)")
    data: list[str] = Field(default_factory=list, description="image folders or datasets sources")
    image_column: str = "image"
    caption_column: str = "text"
    limit: int | None = None


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
    limit: int | None = Field(None, description="evaluate on the first N prompts of each suite")
    images_per_prompt: int = 1
    seed: int = 0
    device: str = "cpu"
    paper: str | None = Field(None, description="the paper table this study reproduces (leaderboards/)")
    compute: str = Field("", description="a human estimate of the compute, shown by `reproduce --list`")

    @field_validator("train")
    @classmethod
    def _train_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - _TRAIN_FIELDS
        if unknown:
            raise ValueError(f"unknown training setting {sorted(unknown)[0]!r}")
        return value

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        from selma.datagen.skills import load_skills

        known = load_skills()
        unknown = [s for s in value if s not in known]
        if unknown:
            raise ValueError(f"unknown skill {unknown[0]!r} (known: {', '.join(known)})")
        return value

    @field_validator("suites")
    @classmethod
    def _suites(cls, value: list[str]) -> list[str]:
        from selma.suites import suite_registry

        unknown = [s for s in value if s not in suite_registry()]
        if unknown:
            raise ValueError(f"unknown suite {unknown[0]!r} (known: {', '.join(suite_registry().names())})")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        from selma.metrics import all_metrics

        known = [*all_metrics().names(), "dsg", "tifa"]
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join(known)})")
        return value

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


def build_variants(study: StudyConfig, out: Path, *, extra_prompts: int = 0, progress: bool = True) -> dict[str, Any]:
    """Build every LoRA the study's variants need under ``out/work``; returns prompts and timings.

    Skill prompts (``prompts_per_skill`` per skill, plus ``extra_prompts`` held out), base-model images
    per skill, weak models' images, one LoRA per needed skill, multi, gt, w2s and merges.
    """
    from selma.datagen.backends import backends
    from selma.datagen.run import generate_prompts
    from selma.datagen.skills import load_skills
    from selma.demo_data import render_shapes_dataset
    from selma.generate import GenerationSettings, generate
    from selma.merge import merge_experts
    from selma.models import resolve_model
    from selma.train import train_lora
    from selma.variants import VARIANT, resolve_variant, variant_dir

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    workdir = out / "work"
    model = resolve_model(study.base_model)
    kinds = defaultdict(set)
    for variant in study.variants:
        match = VARIANT.match(variant)
        assert match is not None
        kinds[match.group("kind")].add(match.group("arg"))
    needs_experts = bool(kinds["expert"] or kinds["merged"])
    if not (needs_experts or kinds["multi"] or kinds["w2s"]):
        skills_needed: list[str] = []
    else:
        skills_needed = study.skills

    settings = study.datagen
    backend_class = backends.get(settings.backend)
    if settings.backend == "offline":
        backend = backend_class()
    elif settings.backend == "transformers":
        backend = backend_class(settings.llm, device=study.device)
    else:
        backend = backend_class(settings.llm, base_url=settings.base_url, chat=not settings.completions)
    skills = load_skills()
    prompt_file = out / "prompts.jsonl"
    if skills_needed:
        generate_prompts(
            [skills[s] for s in skills_needed],
            study.prompts_per_skill + extra_prompts,
            backend,
            prompt_file,
            seed=settings.seed,
            progress=progress,
        )
    by_skill = _prompts_by_skill(prompt_file) if prompt_file.is_file() else {}
    train_prompts = {s: items[: study.prompts_per_skill] for s, items in by_skill.items()}
    held_out = [item for items in by_skill.values() for item in items[study.prompts_per_skill :]]
    timings["datagen"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()

    def render(ref: str, prompts: list[Any], folder: Path) -> Path:
        chosen = resolve_variant(ref, "base", workdir=workdir)
        generate(
            prompts,
            GenerationSettings.for_variant(chosen, seed=study.seed),
            folder,
            lambda: chosen.load(device=study.device),
            progress=progress,
        )
        return folder

    images = {s: render(study.base_model, items, out / "images" / s) for s, items in train_prompts.items()}
    weak = {
        name: [render(name, items, out / f"images-{name.replace('/', '-')}" / s) for s, items in train_prompts.items()]
        for name in sorted(kinds["w2s"])
    }
    timings["generate"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()

    train = study.train_config()

    def fit(variant: str, data: list[str], **overrides: Any) -> None:
        from dataclasses import replace

        target = variant_dir(workdir, model, variant)
        assert target is not None
        train_lora(model, data, target, replace(train, **overrides), resume="latest", progress=progress)

    if needs_experts:
        for skill, folder in images.items():
            fit(f"expert:{skill}", [str(folder)])
    if kinds["multi"]:
        fit("multi", [str(f) for f in images.values()])
    for name in sorted(kinds["gt"]):
        source = study.gt[name]
        data = source.data
        if source.shapes:
            data = [str(render_shapes_dataset(out / f"gt-{name}", source.shapes, seed=study.seed))]
        fit(
            f"gt:{name}",
            data,
            image_column=source.image_column,
            caption_column=source.caption_column,
            limit=source.limit,
        )
    for name, folders in weak.items():
        fit(f"w2s:{name}", [str(f) for f in folders])
    timings["train"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()

    experts = {skill: variant_dir(workdir, model, f"expert:{skill}") for skill in images}
    for method in sorted(kinds["merged"], key=str):
        target = variant_dir(workdir, model, f"merged:{method or 'paper'}")
        assert target is not None
        merge_experts(model, {k: v for k, v in experts.items() if v is not None}, target, method=method or "paper")
    timings["merge"] = round(time.perf_counter() - clock, 2)
    return {
        "workdir": workdir,
        "model": model,
        "train_prompts": train_prompts,
        "held_out": held_out,
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
            images_per_prompt=study.images_per_prompt,
            seed=study.seed,
            limit=study.limit,
            device=study.device,
        )
        for variant in study.variants
        for suite in study.suites
    ]


def _suite_metric(suite: str) -> str | None:
    from selma.suites import suite_registry

    return suite_registry().get(suite).scoring


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
        built = lora is None or (lora / "pytorch_lora_weights.safetensors").is_file()
        row: dict[str, Any] = {"variant": request.variant, "suite": request.suite, "lora_built": built}
        if built:
            row["run"] = asdict(plan_run(request, locator, workdir=out / "work", out_root=out / "runs"))
        else:
            row["run"] = None
        rows.append(row)
    return rows


def run_study(study: StudyConfig, out: Path, locator: Any, *, progress: bool = True) -> dict[str, Any]:
    """Build what is missing, run every cell, and write ``comparison.md``/``comparison.csv``/``study.json``."""
    import pandas as pd

    from selma.results.store import make_provenance, now
    from selma.run import run
    from selma.suites import load_suite

    started = now()
    for suite in study.suites:  # missing suite data fails before any model work
        load_suite(suite, locator)
    built = build_variants(study, out, progress=progress)
    rows = []
    for request in _requests(study):
        result = run(request, locator, workdir=out / "work", out_root=out / "runs")
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

        joined = pd.DataFrame(beside_paper(rows, study.paper, study.base_model)).drop(columns=["run"])
        (out / "paper.md").write_text(
            f"# {study.name}: measured beside {study.paper}\n\n{joined.to_markdown(index=False)}\n", encoding="utf-8"
        )
        record["paper"] = joined.to_dict(orient="records")
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return {"rows": rows, "table": wide}
