"""Paired comparison of two runs on the same suite prompts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.results.store import read_records, read_summary
from selma.stats import DEFAULT_RESAMPLES, paired_bootstrap


def compare_runs(run_a: Path, run_b: Path, *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """Mean per-prompt difference B − A overall and per category, with paired-bootstrap CIs."""
    a, b = read_summary(run_a), read_summary(run_b)
    if a.suite != b.suite:
        raise SelmaError(f"runs score different suites ({a.suite} in {run_a}, {b.suite} in {run_b})")
    if a.metric != b.metric:
        raise SelmaError(f"runs use different metrics ({a.metric} in {run_a}, {b.metric} in {run_b})")
    conventions = (getattr(a, "convention", None), getattr(b, "convention", None))
    if conventions[0] != conventions[1]:
        raise SelmaError(
            f"runs are scored by different conventions ({conventions[0]} in {run_a}, {conventions[1]} in {run_b})"
        )
    prompts_a = {r["prompt_id"]: r for r in read_records(run_a, "prompts")}
    prompts_b = {r["prompt_id"]: r for r in read_records(run_b, "prompts")}
    if set(prompts_a) != set(prompts_b):
        only_a, only_b = len(set(prompts_a) - set(prompts_b)), len(set(prompts_b) - set(prompts_a))
        raise SelmaError(
            f"runs score different prompts ({only_a} only in {run_a}, {only_b} only in {run_b}); "
            "a paired comparison needs the same prompts"
        )
    ids = list(prompts_a)
    groups: dict[str, list[str]] = defaultdict(list)
    for prompt_id in ids:
        if prompts_a[prompt_id]["category"] is not None:
            groups[prompts_a[prompt_id]["category"]].append(prompt_id)

    def diff(subset: list[str]) -> dict[str, Any]:
        result = paired_bootstrap(
            [prompts_a[i]["score"] for i in subset],
            [prompts_b[i]["score"] for i in subset],
            seed=seed,
            n_resamples=n_resamples,
        )
        return {
            "delta": result.interval.mean,
            "ci": result.interval.as_list(),
            "p_value": result.p_value,
            "n": result.n,
        }

    return {
        "suite": a.suite,
        "metric": a.metric,
        "a": {"run": str(run_a), "label": a.label, "score": a.score},
        "b": {"run": str(run_b), "label": b.label, "score": b.score},
        "difference": diff(ids),
        "by_category": {category: diff(subset) for category, subset in groups.items()},
        "seed": seed,
        "n_resamples": n_resamples,
    }
