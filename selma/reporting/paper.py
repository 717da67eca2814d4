"""The paper's numbers (``leaderboards/selma-paper.csv``) and measured rows beside them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from selma.errors import SelmaError

PAPER_CSV = Path(__file__).resolve().parents[2] / "leaderboards" / "selma-paper.csv"
CONFIGS = Path(__file__).parents[1] / "configs" / "paper"
# The paper's column -> selma-bench's metric (the paper does not say which HPS version; v2 is assumed).
METRIC_NAMES = {"dsg": "dsg", "tifa": "tifa", "pickscore": "pickscore", "imagereward": "imagereward", "hps": "hpsv2"}


def paper_rows(table: str | None = None) -> list[dict[str, Any]]:
    """Rows of the paper's tables (optionally one table), values as floats."""
    if not PAPER_CSV.is_file():
        raise SelmaError(f"{PAPER_CSV}: the paper's numbers are not here (a source checkout is needed)")
    with PAPER_CSV.open(encoding="utf-8") as handle:
        rows = [dict(row, value=float(row["value"])) for row in csv.DictReader(handle)]
    return [row for row in rows if table is None or row["table"] == table]


def paper_configs() -> dict[str, Path]:
    """The shipped study configs that reproduce a paper table, by name."""
    return {path.stem: path for path in sorted(CONFIGS.glob("*.yaml"))}


def beside_paper(measured: list[dict[str, Any]], table: str, base_model: str) -> list[dict[str, Any]]:
    """Measured (variant, metric, score, CI) rows joined with the paper's value and the difference.

    The difference's interval is the measured interval shifted by the paper's value (the paper gives none).
    """
    paper = {}
    for row in paper_rows(table):
        skills = row["skills"].split("+") if row["skills"] else []
        if row["base_model"] != base_model or not row["variant"] or len(skills) not in (0, 1, 5):
            continue  # other models, other methods, or rows over a subset of the skills (another study)
        if row["training_data"] == "gt-prompts+sd-v2-images":
            continue  # Figure 1's middle column: ground-truth prompts rendered by SD v2 (no config here)
        if row["training_data"] == "gt-prompts+gt-images" and not row["variant"].startswith("gt"):
            continue
        paper.setdefault((row["variant"], METRIC_NAMES[row["metric"]]), row["value"])
    joined = []
    for row in measured:
        value = paper.get((row["variant"], row["metric"]))
        entry = {**row, "paper": value}
        if value is not None:
            entry["difference"] = round(row["score"] - value, 3)
            entry["difference_ci"] = [round(row["ci_low"] - value, 3), round(row["ci_high"] - value, 3)]
        joined.append(entry)
    return joined


def paper_tables() -> list[str]:
    """The paper's tables and figures that have rows in ``leaderboards/selma-paper.csv`` (none outside a
    source checkout).
    """
    return sorted({row["table"] for row in paper_rows()}) if PAPER_CSV.is_file() else []
