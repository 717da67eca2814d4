"""Leaderboards: result rows gathered from run directories, rendered as Markdown and a static HTML page.

A leaderboard is a CSV (``leaderboards/<name>.csv``) with one row per (model, variant, suite,
metric): score, 95 % interval, per-category scores, the run's configuration hash, and the texts of
its worst-scoring prompts. ``render`` writes ``leaderboard.md`` and a self-contained
``index.html`` (sortable columns, per-category breakdown, a plot, every text HTML-escaped), the rows
best first and the metrics named as registered (``DSG ↑``): direction and display name come from the
metric registry.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pandas as pd

from selma.errors import DataInputError, SelmaError
from selma.harness.metrics import higher_is_better, metric_heading
from selma.reporting.report import headline
from selma.results.store import read_records, read_summary

COLUMNS = [
    "model",
    "variant",
    "suite",
    "metric",
    "score",
    "ci_low",
    "ci_high",
    "n_prompts",
    "by_category",
    "hardest_prompts",
    "config_hash",
    "run",
]


def row_from_run(
    run_dir: Path, *, model: str | None = None, variant: str | None = None, hardest: int = 3
) -> dict[str, Any]:
    """A leaderboard row from a run directory (label ``model/variant`` unless given)."""
    summary = read_summary(run_dir)
    label_model, _, label_variant = summary.label.partition("/")
    worst_first = higher_is_better(summary.metric)
    prompts = sorted(read_records(run_dir, "prompts"), key=lambda r: r["score"], reverse=not worst_first)[:hardest]
    files = {p["prompt_id"]: p["file"] for p in prompts if p.get("file")}  # QA runs: the image judged
    if "images" in summary.records:  # per-image metrics: the prompt's first image
        for record in read_records(run_dir, "images"):
            files.setdefault(record["prompt_id"], record["file"])
    return {
        "model": model or label_model,
        "variant": variant or label_variant or "base",
        **headline(summary),
        "by_category": json.dumps({k: round(v, 4) for k, v in summary.by_category.items()}),
        "hardest_prompts": json.dumps(
            [
                {
                    "id": p["prompt_id"],
                    "text": p.get("text", ""),
                    "score": round(p["score"], 4),
                    "file": files.get(p["prompt_id"]),
                }
                for p in prompts
            ]
        ),
        "config_hash": summary.provenance.config_hash,
        "run": str(run_dir),
    }


def add_runs(board: Path, runs: list[Path], **labels: Any) -> pd.DataFrame:
    """Add (or replace, by model/variant/suite/metric) rows for ``runs`` in the leaderboard CSV ``board``."""
    frame = read_board(board) if board.is_file() else pd.DataFrame(columns=COLUMNS)
    new = pd.DataFrame([row_from_run(run, **labels) for run in runs], columns=COLUMNS)
    key = ["model", "variant", "suite", "metric"]
    keep = ~frame.set_index(key).index.isin(new.set_index(key).index) if len(frame) else []
    combined = pd.concat([frame[keep], new], ignore_index=True) if len(frame) else new
    board.parent.mkdir(parents=True, exist_ok=True)
    tmp = board.with_name(board.name + ".part")
    combined.to_csv(tmp, index=False)
    tmp.replace(board)
    return combined


def read_board(board: Path) -> pd.DataFrame:
    """Read and check a leaderboard CSV."""
    if not board.is_file():
        raise DataInputError(
            "no such leaderboard; start one with `selma-bench leaderboard add BOARD RUN...`", path=board
        )
    try:
        frame = pd.read_csv(board, dtype={"config_hash": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataInputError(f"not a leaderboard CSV ({exc})", path=board) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing and {"table", "base_model", "value"} <= set(frame.columns):
        raise DataInputError(
            "the paper's published numbers, not a leaderboard: `selma-bench reproduce` and `report --paper` "
            "set them beside measured runs",
            path=board,
        )
    if missing:
        raise DataInputError(
            f"missing column(s) {', '.join(missing)}", path=board, row="line 1 (header)", field=missing[0]
        )
    for column in ("score", "ci_low", "ci_high", "n_prompts"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna() | frame[column].isna()
        if bad.any():
            index = int(bad.to_numpy().nonzero()[0][0])
            raise DataInputError(
                f"expected a number, got {frame[column].iloc[index]!r}",
                path=board,
                row=f"line {index + 2}",
                field=column,
            )
        frame[column] = numbers
    for column in ("by_category", "hardest_prompts"):
        for index, value in enumerate(frame[column].fillna("")):
            try:
                json.loads(value or "null")
            except json.JSONDecodeError:
                raise DataInputError("not valid JSON", path=board, row=f"line {index + 2}", field=column) from None
    return frame


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows grouped by suite and metric, best first by each metric's registered direction."""
    order = frame["score"].where(frame["metric"].map(higher_is_better), -frame["score"])
    return frame.assign(_order=-order).sort_values(["suite", "metric", "_order"], kind="stable").drop(columns="_order")


def _plot(frame: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(frame) + 1.5))
    labels = [f"{r.model}/{r.variant} {r.suite}:{r.metric}" for r in frame.itertuples()]
    ax.barh(
        labels, frame["score"], xerr=[frame["score"] - frame["ci_low"], frame["ci_high"] - frame["score"]], capsize=3
    )
    ax.set_xlabel("score (95% CI)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


TEMPLATE = Path(__file__).with_name("templates") / "leaderboard.html.j2"


THUMBNAIL = 96


def _thumbnail(file: str | None) -> str | None:
    """A base64 PNG thumbnail of an image file for the self-contained page; ``None`` if it is not here."""
    import base64
    import io

    from PIL import Image, UnidentifiedImageError

    if not file or not Path(file).is_file():
        return None
    try:
        with Image.open(file) as image:
            small = image.convert("RGB")
            resample = Image.Resampling.NEAREST if small.width < THUMBNAIL else Image.Resampling.LANCZOS
            small = small.resize((THUMBNAIL, round(THUMBNAIL * small.height / small.width)), resample)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(board: Path, out: Path, title: str | None = None) -> dict[str, Path]:
    """Write ``leaderboard.md`` and ``index.html`` for the leaderboard CSV ``board``."""
    from jinja2 import Environment

    frame = read_board(board)
    if frame.empty:
        raise SelmaError(f"{board}: the leaderboard has no rows")
    frame = ranked(frame).reset_index(drop=True)
    frame["metric"] = frame["metric"].map(metric_heading)
    rows = []
    for record in frame.to_dict(orient="records"):
        record["categories"] = json.loads(record["by_category"] or "{}")
        hardest = json.loads(record["hardest_prompts"] or "[]")
        record["hardest"] = [{**p, "thumb": _thumbnail(p.get("file"))} for p in hardest]
        rows.append(record)
    categories = list(dict.fromkeys(c for r in rows for c in r["categories"]))
    html = (
        Environment(autoescape=True)
        .from_string(TEMPLATE.read_text(encoding="utf-8"))
        .render(
            title=title or board.stem,
            rows=rows,
            categories=categories,
            plot=_plot(frame),
            columns=["model", "variant", "suite", "metric", "score", "95% CI", "prompts"],
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    table = frame[["model", "variant", "suite", "metric", "score", "ci_low", "ci_high", "n_prompts"]].copy()
    for column in ("model", "variant", "suite", "metric"):  # Markdown renders raw HTML: escape the labels
        table[column] = table[column].astype(str).map(lambda text: html_escape(text).replace("|", "\\|"))
    (out / "leaderboard.md").write_text(
        f"# {html_escape(title or board.stem)}\n\n{table.to_markdown(index=False)}\n", encoding="utf-8"
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    return {"markdown": out / "leaderboard.md", "html": out / "index.html"}
