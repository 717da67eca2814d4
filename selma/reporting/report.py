"""Comparison tables (Markdown, LaTeX, CSV) and a per-category figure from run directories."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from selma.errors import SelmaError
from selma.harness.metrics import metric_heading
from selma.harness.scoring.conventions import conventions as conventions_registry
from selma.io import sha256_file
from selma.reporting.grid import image_grid
from selma.results.schema import MetricSummary, ScoreSummary
from selma.results.store import make_provenance, now, read_records, read_summary
from selma.stage import replace_output

log = logging.getLogger(__name__)


def headline(summary: ScoreSummary | MetricSummary, *, digits: int = 4) -> dict[str, Any]:
    """The fields every table shows of a run: suite, metric, score and its interval, number of prompts."""
    return {
        "suite": summary.suite,
        "metric": summary.metric,
        "score": round(summary.score, digits),
        "ci_low": round(summary.ci["score"][0], digits),
        "ci_high": round(summary.ci["score"][1], digits),
        "n_prompts": summary.n_prompts,
    }


def summaries_table(summaries: list[ScoreSummary | MetricSummary]) -> pd.DataFrame:
    """One row per run: overall score with its CI; for QA metrics the convention, the no-dependency score and
    the per-prompt and per-question means; the per-category scores.
    """
    rows = []
    for s in summaries:
        row: dict[str, object] = {"run": s.label, **headline(s, digits=1)}
        if isinstance(s, ScoreSummary):
            row["convention"] = s.convention
            row["no_dependency"] = round(s.score_no_dependency, 1)
            row["per_prompt"] = round(s.macro, 1)
            row["per_question"] = round(s.micro, 1)
        row.update({category: round(value, 1) for category, value in s.by_category.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def figure(summaries: list[ScoreSummary | MetricSummary], path: Path) -> None:
    """Grouped bars of per-category scores with their 95 % intervals, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    categories = list(dict.fromkeys(c for s in summaries for c in s.by_category)) or ["all"]
    width = 0.8 / len(summaries)
    x = np.arange(len(categories))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(categories) + 2), 4.5))
    for n, s in enumerate(summaries):
        if s.by_category:
            values = [s.by_category.get(c, np.nan) for c in categories]
            cis = [s.by_category_ci.get(c, [np.nan, np.nan]) for c in categories]
        else:
            values, cis = [s.score], [s.ci["score"]]
        low = [v - ci[0] for v, ci in zip(values, cis, strict=True)]
        high = [ci[1] - v for v, ci in zip(values, cis, strict=True)]
        ax.bar(x + n * width - 0.4 + width / 2, values, width, yerr=[low, high], capsize=2, label=s.label)
    ax.set_xticks(x, categories, rotation=30, ha="right")
    ax.set_ylabel(f"{metric_heading(summaries[0].metric)}, 95% CI")
    ax.set_title(f"{summaries[0].suite}: score by prompt category")
    if all(isinstance(s, ScoreSummary) for s in summaries):
        ax.set_ylim(0, 100)
    fig.legend(loc="lower center", ncol=min(4, len(summaries)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_report(run_dirs: list[Path], out: Path) -> dict[str, Path]:
    """Write ``table.md``, ``table.tex``, ``table.csv``, ``figure.png``, ``report.json`` and, when the runs
    record their images, ``grid.png`` (the same prompts rendered by each run) into ``out``.
    """
    if not run_dirs:
        raise SelmaError("report needs at least one run directory")
    started = now()
    summaries = [read_summary(run) for run in run_dirs]
    suites = {s.suite for s in summaries}
    if len(suites) > 1:
        raise SelmaError(f"runs score different suites ({', '.join(sorted(suites))}); report one suite at a time")
    measures = {s.metric for s in summaries}
    if len(measures) > 1:
        raise SelmaError(f"runs use different metrics ({', '.join(sorted(measures))}); report one metric at a time")
    conventions = {s.convention if isinstance(s, ScoreSummary) else None for s in summaries}
    if len(conventions) > 1:
        raise SelmaError(
            f"runs are scored by different conventions ({', '.join(sorted(map(str, conventions)))}); "
            "report one convention at a time"
        )
    table = summaries_table(summaries)
    convention = conventions.pop()
    micro = convention is not None and conventions_registry.get(convention).aggregate == "micro"
    headline = "mean over questions" if micro else "mean over prompts"
    caption = (
        f"{summaries[0].suite} ({metric_heading(summaries[0].metric)}"
        f"{f', convention {convention}' if convention else ''}); "
        f"score = {headline}, 95% bootstrap CI over prompts"
    )
    latex = (
        table.style.hide(axis="index")
        .format(precision=1)
        .to_latex(caption=caption, label=f"tab:{summaries[0].suite}", hrules=True)
    )
    config = {"command": "report", "runs": [str(r) for r in run_dirs]}
    inputs = {str(r / "summary.json"): sha256_file(r / "summary.json") for r in run_dirs}
    provenance = make_provenance(config, inputs, seed=0, started_at=started)

    def build(tmp: Path) -> None:
        (tmp / "table.md").write_text(f"{caption}\n\n{table.to_markdown(index=False)}\n", encoding="utf-8")
        (tmp / "table.tex").write_text(latex, encoding="utf-8")
        table.to_csv(tmp / "table.csv", index=False)
        figure(summaries, tmp / "figure.png")
        grid = _grid(run_dirs, summaries)
        if grid is not None:
            image_grid(grid[0], grid[1], tmp / "grid.png")
        else:
            log.info("no grid.png: the runs record no images of the same prompts")
        (tmp / "report.json").write_text(
            json.dumps({"rows": table.to_dict(orient="records"), "provenance": provenance.model_dump()}, indent=2),
            encoding="utf-8",
        )

    replace_output(out, "report", config, build)
    names = ("table.md", "table.tex", "table.csv", "figure.png", "grid.png", "report.json")
    return {name: out / name for name in names if (out / name).is_file()}


GRID_PROMPTS = 6


def _grid(run_dirs: list[Path], summaries: list[Any]) -> tuple[dict[str, list[Path | None]], list[str]] | None:
    """The same prompts' images from each run (rows: run labels), or ``None`` when the runs record no images.

    Prompts are the first ``GRID_PROMPTS`` that every run has an image of, in suite order.
    """
    files: list[dict[str, Path]] = []
    texts: dict[str, str] = {}
    for run in run_dirs:
        try:
            records = read_records(run, "prompts")
            images = read_records(run, "images") if "images" in read_summary(run).records else []
        except (SelmaError, OSError, ValueError):  # a run kept without its records: no grid, the tables stand
            return None
        texts.update({r["prompt_id"]: r.get("text") or r["prompt_id"] for r in records})
        own = {r["prompt_id"]: Path(r["file"]) for r in records if r.get("file")}
        for record in images:
            own.setdefault(record["prompt_id"], Path(record["file"]))
        files.append({pid: path for pid, path in own.items() if path.is_file()})
    shared = [pid for pid in texts if all(pid in own for own in files)][:GRID_PROMPTS]
    if not shared:
        return None
    rows: dict[str, list[Path | None]] = {}
    for summary, own in zip(summaries, files, strict=True):
        label = summary.label
        while label in rows:
            label += "'"
        rows[label] = [own[pid] for pid in shared]
    return rows, [texts[pid] for pid in shared]


def paper_table(run_dirs: list[Path], table: str, base_model: str) -> pd.DataFrame:
    """Measured rows (variant from each run's ``model/variant`` label) beside the paper's numbers."""
    from selma.reporting.paper import beside_paper

    rows = []
    for run in run_dirs:
        summary = read_summary(run)
        variant = summary.label.partition("/")[2] or "base"
        low, high = summary.ci["score"]
        rows.append(
            {
                "variant": variant,
                "suite": summary.suite,
                "metric": summary.metric,
                "score": round(summary.score, 3),
                "ci_low": round(low, 3),
                "ci_high": round(high, 3),
            }
        )
    return pd.DataFrame(beside_paper(rows, table, base_model))


def write_paper_report(runs: list[Path], paper: str, model: str, out: Path) -> tuple[str, pd.DataFrame]:
    """``paper.md`` and ``paper.csv`` in ``out``: measured runs beside the paper's numbers; returns the Markdown
    and the table.
    """
    table = paper_table(runs, paper, model)
    out.mkdir(parents=True, exist_ok=True)
    text = f"# measured beside the paper's {paper} ({model})\n\n{table.to_markdown(index=False)}\n"
    (out / "paper.md").write_text(text, encoding="utf-8")
    table.to_csv(out / "paper.csv", index=False)
    return text, table
