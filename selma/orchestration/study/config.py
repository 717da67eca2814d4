"""A study's YAML file as a typed, validated configuration: every problem names the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selma.errors import DataInputError, SelmaError
from selma.recipe.train_config import TrainConfig


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


class MergeSection(BaseModel):
    """How the ``merged[:<method>]`` variants combine the skill experts (as ``selma-bench merge``)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] | None = Field(
        None, description="each skill's expert weight (default: 1/N each, as SELMA's paper describes)"
    )
    density: float | None = Field(
        None, gt=0, le=1, description="the fraction kept by ties, dare_* and magnitude_prune (default 0.5)"
    )
    seed: int = Field(0, description="the seed of DARE's random pruning")


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
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields to override (`selma-bench train -h` lists them)"
    )
    gt: dict[str, GtSource] = Field(default_factory=dict)
    weak_models: list[str] = Field(default_factory=list)
    merge: MergeSection = Field(default_factory=MergeSection)
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
        from selma.recipe.train_config import check_overrides

        try:
            return check_overrides(value)
        except SelmaError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("checkpoints")
    @classmethod
    def _checkpoint_roles(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        from selma.harness.metrics.answerer_choice import answerer_choice

        for metric, roles in value.items():
            if "vqa" in roles:
                try:
                    answerer_choice(roles)
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
    def _merge_weights(self) -> StudyConfig:
        weights = self.merge.weights
        if weights is not None and set(weights) != set(self.skills):
            other = sorted(set(weights) ^ set(self.skills))[0]
            raise ValueError(f"merge.weights: needs one weight per skill of the study, exactly ({other!r})")
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
