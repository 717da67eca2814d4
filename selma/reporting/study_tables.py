"""A study's tables: one row per (variant, suite, metric), the wide ``comparison.md``/``comparison.csv``,
and ``paper.md`` (measured rows beside the paper's).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selma.harness.metrics import metric_heading

if TYPE_CHECKING:
    import pandas as pd


def comparison_rows(requests: Sequence[Any], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, suite, metric) of the evaluated cells: score, interval, prompts and run folders."""
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
    return rows


def write_comparison(out: Path, name: str, variants: Sequence[str], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``comparison.md`` (variants x suite/metric, in the study's order) and ``comparison.csv`` (the rows)."""
    import pandas as pd

    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="variant", columns=["suite", "metric"], values="score", sort=False)
    wide.columns = [f"{suite}/{metric_heading(metric)}" for suite, metric in wide.columns]
    wide = wide.reindex(list(variants))
    (out / "comparison.md").write_text(f"# {name}\n\n{wide.to_markdown()}\n", encoding="utf-8")
    table.to_csv(out / "comparison.csv", index=False)
    return wide


def write_beside_paper(
    out: Path, name: str, paper: str, base_model: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``paper.md``: the measured rows beside the paper table ``paper``'s; returns the joined records."""
    import pandas as pd

    from selma.reporting.paper import beside_paper

    joined = pd.DataFrame(beside_paper(rows, paper, base_model)).drop(columns=["run", "score_run"])
    (out / "paper.md").write_text(
        f"# {name}: measured beside {paper}\n\n{joined.to_markdown(index=False)}\n", encoding="utf-8"
    )
    return joined.to_dict(orient="records")
