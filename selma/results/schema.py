"""The typed schema of a run's ``summary.json`` (validated when a run is read back)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Provenance(BaseModel):
    """Everything needed to tell how a result was made and to make it again."""

    model_config = ConfigDict(extra="forbid")

    package: str = "selma-bench"
    package_version: str
    git_revision: str | None = Field(description="revision of the selma-bench source tree; '+dirty' if modified")
    command: list[str] | None = None
    config: dict[str, Any] = Field(description="the full resolved configuration")
    config_hash: str = Field(description="sha256 of the canonical JSON of `config`")
    inputs: dict[str, str] = Field(description="input file path -> sha256")
    seed: int
    started_at: str
    finished_at: str
    python: str
    platform: str


class ScoreSummary(BaseModel):
    """Scores of one run of a QA metric (DSG or TIFA) on one suite; all scores are 0-100."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["rescore", "score"] = "rescore"
    suite: str
    metric: str = Field(description="the question set: dsg or tifa")
    convention: str = Field(description="the scoring convention (see `selma-bench metrics`), e.g. dsg or dsg-selma")
    t2i_model: str | None = None
    label: str = Field(description="row label in tables")
    score: float = Field(
        description="the convention's headline: mean over prompts of per-prompt scores (official DSG and TIFA) "
        "or mean over all questions (SELMA's DSG)"
    )
    score_no_dependency: float = Field(description="the same average without the dependency rule")
    macro: float = Field(description="mean over prompts of per-prompt scores")
    micro: float = Field(description="mean over the questions of answered prompts")
    stdev: float = Field(description="sample standard deviation of per-prompt scores")
    ci: dict[str, list[float]] = Field(
        description="95% bootstrap intervals over prompts of score and score_no_dependency"
    )
    by_category: dict[str, float] = Field(
        description="the convention's breakdown: per prompt category (mean over prompts) or per detailed "
        "question type (mean over questions)"
    )
    by_category_ci: dict[str, list[float]]
    by_element_type: dict[str, float] = Field(description="mean over questions of each element type")
    n_prompts: int
    n_prompts_answered: int
    n_questions: int
    n_blank_answers: int
    n_missing_answers: int
    notes: list[str]
    records: dict[str, str] = Field(description="record kind -> file name in the run directory")
    provenance: Provenance


class MetricSummary(BaseModel):
    """Scores of one per-image metric (PickScore, HPS, ImageReward, VQAScore) on one suite's images."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["metric"] = "metric"
    suite: str
    metric: str
    label: str
    convention: str = Field(description="how the metric is computed, as registered")
    checkpoints: dict[str, str]
    score: float = Field(description="mean over prompts of the per-prompt mean over images")
    stdev: float
    ci: dict[str, list[float]]
    by_category: dict[str, float]
    by_category_ci: dict[str, list[float]]
    n_prompts: int
    n_images: int
    notes: list[str]
    records: dict[str, str]
    provenance: Provenance
