"""Re-scoring recorded VQA answers with a suite's official rules, into a run directory."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selma import __version__
from selma.answers import answer_formats, detect_format
from selma.errors import SelmaError
from selma.results.schema import Provenance, ScoreSummary
from selma.results.store import config_hash, existing_run, make_provenance, now, write_run
from selma.scoring.matchers import make_matcher
from selma.scoring.qa import QARules, score_questions
from selma.stats import DEFAULT_RESAMPLES, bootstrap_mean
from selma.suites import DataLocator, load_suite
from selma.suites.data import sha256_file

# Per-metric rules of the shared scorer, and the matcher each metric uses by default.
METRIC_RULES: dict[str, tuple[QARules, str]] = {
    "dsg": (QARules(missing_prompts="zero", use_dependencies=True), "exact"),
    "tifa": (QARules(missing_prompts="skip", use_dependencies=False), "normalized"),
}


@dataclass(frozen=True)
class RescoreRequest:
    """Everything that determines a rescoring run's output."""

    suite: str
    answers: Path
    answers_format: str | None = None
    t2i_model: str | None = None
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
    if metric not in METRIC_RULES:
        raise SelmaError(f"suite '{suite.name}' has no question-answer scoring; rescore works on: dsg, tifa, tifa160")
    rules, default_matcher = METRIC_RULES[metric]
    answers_format = request.answers_format or detect_format(request.answers)
    matcher_name = request.matcher or default_matcher
    inputs = {str(path): sha256_file(path) for path in suite.files.values()}
    inputs[str(request.answers)] = sha256_file(request.answers)
    config: dict[str, Any] = {
        "command": "rescore",
        "suite": suite.name,
        "metric": metric,
        "answers_format": answers_format,
        "t2i_model": request.t2i_model,
        "matcher": matcher_name,
        "matcher_model": request.matcher_model,
        "rules": {"missing_prompts": rules.missing_prompts, "use_dependencies": rules.use_dependencies},
        "strict": request.strict,
        "seed": request.seed,
        "n_resamples": request.n_resamples,
        "label": request.label,
        "input_sha256": sorted(inputs.values()),
        "scorer_version": __version__,
    }
    digest = config_hash(config)
    run_dir = out or Path("selma-runs") / f"rescore-{suite.name}-{request.answers.stem}-{digest[:12]}"
    if not force:
        cached = existing_run(run_dir, digest)
        if cached is not None:
            return RescoreResult(cached, run_dir, cached=True)

    answers = answer_formats.get(answers_format)(request.answers, suite, request.t2i_model, request.strict)
    questions = answers.questions or suite.questions
    matcher = make_matcher(matcher_name, request.matcher_model)
    scores = score_questions(suite.prompts, questions, answers.answers, matcher, rules)
    if not scores.prompts:
        raise SelmaError(f"{request.answers}: no answers for any prompt of suite '{suite.name}'")

    summary = summarize(
        scores.prompts,
        scores.questions,
        suite=suite.name,
        metric=metric,
        t2i_model=answers.t2i_model,
        label=request.label or _default_label(answers.t2i_model, request.answers),
        seed=request.seed,
        n_resamples=request.n_resamples,
        notes=[*suite.notes, *([f"{len(answers.blank)} blank answers scored 0"] if answers.blank else [])],
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
    metric: str,
    t2i_model: str | None,
    label: str,
    seed: int,
    n_resamples: int,
    notes: list[str],
    n_blank: int,
    provenance: Provenance,
) -> ScoreSummary:
    """Aggregate per-prompt and per-question records into a :class:`ScoreSummary`."""
    scores = [r["score"] for r in prompt_records]
    answered_prompts = {r["prompt_id"] for r in prompt_records if r["answered"]}
    answered_questions = [r for r in question_records if r["prompt_id"] in answered_prompts]
    by_category: dict[str, list[float]] = defaultdict(list)
    for record in prompt_records:
        if record["category"] is not None:
            by_category[record["category"]].append(record["score"])
    by_type: dict[str, list[int]] = defaultdict(list)
    for record in answered_questions:
        if record["element_type"] is not None:
            by_type[record["element_type"]].append(record["score"])
    overall = bootstrap_mean(scores, seed=seed, n_resamples=n_resamples)
    no_dep = bootstrap_mean([r["score_no_dependency"] for r in prompt_records], seed=seed, n_resamples=n_resamples)
    category_ci = {k: bootstrap_mean(v, seed=seed, n_resamples=n_resamples) for k, v in by_category.items()}
    return ScoreSummary(
        suite=suite,
        metric=metric,
        t2i_model=t2i_model,
        label=label,
        score=overall.mean,
        score_no_dependency=no_dep.mean,
        micro=100.0 * float(np.mean([r["score"] for r in answered_questions])) if answered_questions else 0.0,
        stdev=statistics.stdev(scores) if len(scores) > 1 else 0.0,
        ci={"score": overall.as_list(), "score_no_dependency": no_dep.as_list()},
        by_category={k: v.mean for k, v in category_ci.items()},
        by_category_ci={k: v.as_list() for k, v in category_ci.items()},
        by_element_type={k: 100.0 * float(np.mean(v)) for k, v in by_type.items()},
        n_prompts=len(prompt_records),
        n_prompts_answered=sum(r["answered"] for r in prompt_records),
        n_questions=len(answered_questions),
        n_blank_answers=n_blank,
        n_missing_answers=sum(1 for r in answered_questions if not r["answered"]),
        notes=notes,
        records={"prompts": "prompts.jsonl", "questions": "questions.jsonl"},
        provenance=provenance,
    )
