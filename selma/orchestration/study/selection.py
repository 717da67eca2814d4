"""Checkpoint selection on held-out prompts against selection on the test suite.

The paper picked each LoRA's checkpoint by its DSG score on the test prompts. Here every saved
checkpoint of the chosen variants is scored on a validation suite (held-out prompts) and on the
study's first test suite; the checkpoint picked on validation and the one picked on the test suite
are reported side by side with their test scores. The difference is the optimism of selecting on
the benchmark: a number, not a worry.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from selma.harness.metrics import higher_is_better
from selma.orchestration.study.launch import execute
from selma.orchestration.study.units import cell_request, evaluate_cell


def best_step(scores: dict[int, float], higher: bool) -> int:
    """The step with the best score (ties: the earliest)."""
    return min(scores, key=lambda step: (-scores[step] if higher else scores[step], step))


def summarize(rows: list[dict[str, Any]], validation: str, test: str, higher: bool) -> list[dict[str, Any]]:
    """Per variant: the step picked on ``validation`` and on ``test``, their test scores and the difference."""
    out = []
    for variant in dict.fromkeys(row["variant"] for row in rows):
        own = [row for row in rows if row["variant"] == variant]
        on_validation = {row["step"]: row["score"] for row in own if row["suite"] == validation}
        on_test = {row["step"]: row["score"] for row in own if row["suite"] == test}
        by_validation, by_test = best_step(on_validation, higher), best_step(on_test, higher)
        final = max(on_test)
        out.append(
            {
                "variant": variant,
                "steps": sorted(on_test),
                "picked_on_validation": by_validation,
                "test_score_at_it": round(on_test[by_validation], 3),
                "picked_on_test": by_test,
                "test_score_at_it_on_test": round(on_test[by_test], 3),
                "selection_bias": round(on_test[by_test] - on_test[by_validation], 3),
                "final_step": final,
                "test_score_final": round(on_test[final], 3),
            }
        )
    return out


def select_checkpoints(
    study: Any, out: Path, locator: Any, launcher: str | None, folder: Path, params: dict[str, Any]
) -> dict[str, Any]:
    """Score every saved checkpoint of ``study.selection.variants`` on the validation and first test suite;
    write ``selection.md`` and ``selection.csv`` and return the rows and the per-variant summary.
    """
    import pandas as pd

    selection = study.selection
    validation, test = selection.validation_suite, study.suites[0]
    cells = [
        (variant, step, suite)
        for variant in selection.variants
        for step in study.checkpoint_steps()
        for suite in (validation, test)
    ]
    units = [partial(evaluate_cell, study, out, locator, cell_request(study, v, s, step)) for v, step, s in cells]
    results = execute(units, launcher, folder, params)
    rows = []
    for (variant, step, suite), result in zip(cells, results, strict=True):
        summary = result["summaries"][0]
        rows.append(
            {"variant": variant, "step": step, "suite": suite, "metric": summary["metric"], "score": summary["score"]}
        )
    higher = higher_is_better(rows[0]["metric"]) if rows else True
    summary = summarize(rows, validation, test, higher)
    table = pd.DataFrame(summary).drop(columns=["steps"])
    per_step = pd.DataFrame(rows).pivot_table(index=["variant", "step"], columns="suite", values="score", sort=False)
    text = (
        f"# {study.name}: checkpoint selection ({validation} = held-out prompts, {test} = test prompts)\n\n"
        f"{table.to_markdown(index=False)}\n\n"
        "selection_bias = the test score of the checkpoint picked on the test suite minus that of the checkpoint "
        "picked on held-out prompts (the optimism of selecting on the benchmark).\n\n"
        f"## every checkpoint\n\n{per_step.round(3).to_markdown()}\n"
    )
    (out / "selection.md").write_text(text, encoding="utf-8")
    pd.DataFrame(rows).to_csv(out / "selection.csv", index=False)
    return {"validation_suite": validation, "test_suite": test, "rows": rows, "summary": summary}
