"""Re-scoring recorded VQA answers with a suite's official rules, into a run directory."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selma import __version__
from selma.errors import SelmaError
from selma.harness.answers import answer_formats, detect_format
from selma.harness.metrics import qa_metrics
from selma.harness.scoring.conventions import QAConvention, resolve_convention
from selma.harness.scoring.matchers import make_matcher
from selma.harness.scoring.qa import score_questions
from selma.harness.suites import DataLocator, load_suite
from selma.io import sha256_file
from selma.results.schema import Provenance, ScoreSummary
from selma.results.store import existing_run, make_provenance, now, write_run
from selma.stage import stage_key
from selma.stats import DEFAULT_RESAMPLES, bootstrap_mean, bootstrap_ratio, group_intervals


@dataclass(frozen=True)
class RescoreRequest:
    """Everything that determines a rescoring run's output."""

    suite: str
    answers: Path
    answers_format: str | None = None
    t2i_model: str | None = None
    convention: str | None = None
    matcher: str | None = None
    matcher_model: str | None = None
    strict: bool = False
    seed: int = 0
    n_resamples: int = DEFAULT_RESAMPLES
    label: str | None = None


@dataclass(frozen=True)
class RescoreResult:
    """The summary and where it was written; ``cached`` when an identical run was reused."""

    summary: ScoreSummary
    run_dir: Path
    cached: bool


def rescore(
    request: RescoreRequest, locator: DataLocator, out: Path | None = None, force: bool = False
) -> RescoreResult:
    """Score the answers in ``request.answers`` on ``request.suite`` and write a run directory.

    A run with the same configuration hash in the target directory is reused, not recomputed.
    """
    started = now()
    if not request.answers.is_file():
        raise SelmaError(f"{request.answers}: no such answers file")
    suite = load_suite(request.suite, locator)
    metric = suite.spec.scoring
    if metric not in qa_metrics():
        raise SelmaError(f"suite '{suite.name}' has no question-answer scoring: rescore works on suites with questions")
    convention = resolve_convention(metric, request.convention)
    answers_format = request.answers_format or detect_format(request.answers)
    matcher_name = request.matcher or convention.matcher
    inputs = {str(path): sha256_file(path) for path in suite.files.values()}
    inputs[str(request.answers)] = sha256_file(request.answers)
    config: dict[str, Any] = {
        "command": "rescore",
        "suite": suite.name,
        "metric": metric,
        "convention": convention.name,
        "answers_format": answers_format,
        "t2i_model": request.t2i_model,
        "matcher": matcher_name,
        "matcher_model": request.matcher_model,
        "strict": request.strict,
        "seed": request.seed,
        "n_resamples": request.n_resamples,
        "label": request.label,
        "input_sha256": sorted(inputs.values()),
        "scorer_version": __version__,
    }
    digest = stage_key("run", config)
    run_dir = out or Path("selma-runs") / f"rescore-{suite.name}-{request.answers.stem}-{digest[:12]}"
    if not force:
        cached = existing_run(run_dir, config)
        if cached is not None:
            return RescoreResult(cached, run_dir, cached=True)

    answers = answer_formats.get(answers_format)(request.answers, suite, request.t2i_model, request.strict)
    questions = answers.questions or suite.questions
    matcher = make_matcher(matcher_name, request.matcher_model)
    scores = score_questions(suite.prompts, questions, answers.answers, matcher, convention)
    if not scores.prompts:
        raise SelmaError(f"{request.answers}: no answers for any prompt of suite '{suite.name}'")
    notes = [*suite.notes, *([f"{len(answers.blank)} blank answers scored 0"] if answers.blank else [])]
    if matcher_name != convention.matcher:
        notes.append(f"answers mapped to choices by '{matcher_name}', not the convention's '{convention.matcher}'")

    summary = summarize(
        scores.prompts,
        scores.questions,
        suite=suite.name,
        convention=convention,
        t2i_model=answers.t2i_model,
        label=request.label or _default_label(answers.t2i_model, request.answers),
        seed=request.seed,
        n_resamples=request.n_resamples,
        notes=notes,
        n_blank=len(answers.blank),
        provenance=make_provenance(config, inputs, seed=request.seed, started_at=started),
    )
    write_run(
        run_dir, summary, {summary.records["prompts"]: scores.prompts, summary.records["questions"]: scores.questions}
    )
    return RescoreResult(summary, run_dir, cached=False)


def _default_label(t2i_model: str | None, answers: Path) -> str:
    return f"{answers.stem}:{t2i_model}" if t2i_model else answers.stem


def summarize(
    prompt_records: list[dict[str, Any]],
    question_records: list[dict[str, Any]],
    *,
    suite: str,
    convention: QAConvention,
    t2i_model: str | None,
    label: str,
    seed: int,
    n_resamples: int,
    notes: list[str],
    n_blank: int,
    provenance: Provenance,
) -> ScoreSummary:
    """Aggregate per-prompt and per-question records into a :class:`ScoreSummary` by ``convention``."""
    scores = [r["score"] for r in prompt_records]
    answered_prompts = {r["prompt_id"] for r in prompt_records if r["answered"]}
    answered_questions = [r for r in question_records if r["prompt_id"] in answered_prompts]
    per_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in question_records:
        per_prompt[record["prompt_id"]].append(record)

    def headline(field: str) -> Any:
        if convention.aggregate == "macro":
            prompt_field = "score" if field == "score" else "score_no_dependency"
            return bootstrap_mean([r[prompt_field] for r in prompt_records], seed=seed, n_resamples=n_resamples)
        sums = [100.0 * sum(q[field] for q in per_prompt[r["prompt_id"]]) for r in prompt_records]
        counts = [len(per_prompt[r["prompt_id"]]) for r in prompt_records]
        return bootstrap_ratio(sums, counts, seed=seed, n_resamples=n_resamples)

    overall, no_dep = headline("score"), headline("raw")
    if convention.categories == "prompt":
        category_ci = group_intervals(prompt_records, "category", "score", seed=seed, n_resamples=n_resamples)
    else:
        category_ci = group_intervals(
            answered_questions, "detailed_type", "score", seed=seed, n_resamples=n_resamples, scale=100.0, missing="-"
        )
    by_type: dict[str, list[int]] = defaultdict(list)
    for record in answered_questions:
        if record["element_type"] is not None:
            by_type[record["element_type"]].append(record["score"])
    return ScoreSummary(
        suite=suite,
        metric=convention.metric,
        convention=convention.name,
        t2i_model=t2i_model,
        label=label,
        score=overall.mean,
        score_no_dependency=no_dep.mean,
        macro=float(np.mean(scores)) if scores else float("nan"),
        micro=100.0 * float(np.mean([r["score"] for r in answered_questions])) if answered_questions else 0.0,
        stdev=statistics.stdev(scores) if len(scores) > 1 else 0.0,
        ci={"score": overall.as_list(), "score_no_dependency": no_dep.as_list()},
        by_category={k: v.mean for k, v in category_ci.items()},
        by_category_ci={k: v.as_list() for k, v in category_ci.items()},
        by_element_type={k: 100.0 * float(np.mean(v)) for k, v in by_type.items()},
        n_prompts=len(prompt_records),
        n_prompts_answered=len(answered_prompts),
        n_questions=len(answered_questions),
        n_blank_answers=n_blank,
        n_missing_answers=sum(r.get("n_unanswered", 0) for r in prompt_records),
        notes=notes,
        records={"prompts": "prompts.jsonl", "questions": "questions.jsonl"},
        provenance=provenance,
    )
