"""Per-skill tables, SELMA's claims, a chart and an image grid for a study scored exactly in the shapes world.

For each variant and skill: the DSG score (mean over prompts, 0-100) with its 95 % bootstrap
interval, the caption-level accuracy (the share of prompts whose every question passes), and the
difference from ``base`` on the same prompts with a paired-bootstrap interval and p-value. Then each
of the paper's claims the study can test, with its difference, interval and verdict
(:mod:`selma.reporting.claims`), and the same prompts rendered by every variant (``grid.png``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from selma.results.store import read_records
from selma.stage import replace_output
from selma.stats import bootstrap_mean, paired_bootstrap
from selma.world.scenes import SKILLS

ALL = "all"


def _fmt(mean: float, low: float, high: float) -> str:
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def world_table(rows: Sequence[Mapping[str, Any]], *, seed: int = 0, baseline: str = "base") -> list[dict[str, Any]]:
    """One record per (variant, skill) from a study's result rows (each naming its run directory)."""
    by_variant: dict[str, dict[str, float]] = {}
    categories: dict[str, str] = {}
    for row in rows:
        records = read_records(row["score_run"], "prompts")
        by_variant[row["variant"]] = {r["prompt_id"]: float(r["score"]) for r in records}
        categories.update({r["prompt_id"]: r["category"] for r in records})
    groups = {
        skill: [p for p, c in categories.items() if c == skill] for skill in SKILLS if skill in categories.values()
    }
    groups[ALL] = list(categories)
    base = by_variant.get(baseline)
    out = []
    for variant, scores in by_variant.items():
        for skill, prompts in groups.items():
            values = [scores[p] for p in prompts]
            dsg = bootstrap_mean(values, seed=seed)
            caption = bootstrap_mean([100.0 * (v >= 100.0 - 1e-9) for v in values], seed=seed)
            record: dict[str, Any] = {
                "variant": variant,
                "skill": skill,
                "n_prompts": len(values),
                "dsg": round(dsg.mean, 2),
                "dsg_low": round(dsg.low, 2),
                "dsg_high": round(dsg.high, 2),
                "caption": round(caption.mean, 2),
                "caption_low": round(caption.low, 2),
                "caption_high": round(caption.high, 2),
            }
            if base is not None and variant != baseline:
                diff = paired_bootstrap([base[p] for p in prompts], values, seed=seed)
                record.update(
                    delta=round(diff.interval.mean, 2),
                    delta_low=round(diff.interval.low, 2),
                    delta_high=round(diff.interval.high, 2),
                    p_value=round(diff.p_value, 4),
                )
            out.append(record)
    return out


def _markdown(table: list[dict[str, Any]], title: str) -> str:
    import pandas as pd

    frame = pd.DataFrame(table)
    skills = list(dict.fromkeys(frame["skill"]))
    variants = list(dict.fromkeys(frame["variant"]))
    cell = {(r["variant"], r["skill"]): r for r in table}
    sections = [f"# {title}\n"]
    for heading, key in (("DSG score (0-100)", "dsg"), ("Caption-level accuracy (%)", "caption")):
        lines = [
            f"## {heading}, 95 % bootstrap interval over prompts\n",
            "| variant | " + " | ".join(skills) + " |",
            "|---" * (len(skills) + 1) + "|",
        ]
        for v in variants:
            values = [cell[v, s] for s in skills]
            lines.append(
                f"| {v} | " + " | ".join(_fmt(c[key], c[f"{key}_low"], c[f"{key}_high"]) for c in values) + " |"
            )
        sections.append("\n".join(lines) + "\n")
    if "delta" in frame:
        lines = [
            "## DSG difference from base on the same prompts (paired bootstrap 95 % interval; * p < 0.05)\n",
            "| variant | " + " | ".join(skills) + " |",
            "|---" * (len(skills) + 1) + "|",
        ]
        for v in variants[1:]:
            cells = []
            for s in skills:
                c = cell[v, s]
                star = "*" if c["p_value"] < 0.05 else ""
                cells.append(f"{c['delta']:+.1f}{star} [{c['delta_low']:+.1f}, {c['delta_high']:+.1f}]")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def _colors(variants: Sequence[str]) -> dict[str, Any]:
    """A colour of its own for each variant (tab20 holds 20; beyond that the hues of a rainbow)."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    if len(variants) <= palette.N:
        # the dark shades first, then the light ones: neighbouring bars stay apart
        order = [*range(0, palette.N, 2), *range(1, palette.N, 2)]
        return {v: palette(order[i]) for i, v in enumerate(variants)}
    rainbow = matplotlib.colormaps["hsv"]
    return {v: rainbow(i / len(variants)) for i, v in enumerate(variants)}


def _figure(table: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    skills = list(dict.fromkeys(r["skill"] for r in table))
    variants = list(dict.fromkeys(r["variant"] for r in table))
    colors = _colors(variants)
    cell = {(r["variant"], r["skill"]): r for r in table}
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    x = np.arange(len(skills))
    for i, v in enumerate(variants):
        means = [cell[v, s]["dsg"] for s in skills]
        low = [cell[v, s]["dsg"] - cell[v, s]["dsg_low"] for s in skills]
        high = [cell[v, s]["dsg_high"] - cell[v, s]["dsg"] for s in skills]
        offset = x + (i - (len(variants) - 1) / 2) * width
        ax.bar(offset, means, width, yerr=[low, high], capsize=2, label=v, color=colors[v])
    ax.set_xticks(x, skills)
    ax.set_ylabel("DSG score (exact), 95 % CI")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})  # no timestamp: the same table gives the same file
    plt.close(fig)


def _forest(table: list[dict[str, Any]], path: Path, title: str) -> None:
    """Each variant's paired DSG difference from the base with its 95 % interval, one panel per skill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table if "delta" in r]
    skills = list(dict.fromkeys(r["skill"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    colors = _colors(["base", *variants])
    cell = {(r["variant"], r["skill"]): r for r in rows}
    fig, axes = plt.subplots(1, len(skills), figsize=(2.4 * len(skills) + 2.2, 0.32 * len(variants) + 1.4), sharey=True)
    axes = [axes] if len(skills) == 1 else list(axes)
    ys = list(range(len(variants)))[::-1]
    for ax, skill in zip(axes, skills, strict=True):
        for y, v in zip(ys, variants, strict=True):
            c = cell[v, skill]
            significant = c["p_value"] < 0.05
            ax.errorbar(
                c["delta"],
                y,
                xerr=[[c["delta"] - c["delta_low"]], [c["delta_high"] - c["delta"]]],
                fmt="o",
                mfc=colors[v] if significant else "white",
                color=colors[v],
                capsize=2,
            )
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        ax.set_title(skill, fontsize=9)
        ax.set_xlabel("DSG minus base")
    axes[0].set_yticks(ys, variants, fontsize=8)
    fig.suptitle(f"{title}: paired difference from base, 95 % CI (filled: p < 0.05)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def write_world_report(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    title: str,
    config: Mapping[str, Any],
    timings: Mapping[str, float],
    provenance: Mapping[str, Any],
    seed: int = 0,
    grid_per_skill: int = 2,
) -> dict[str, Path]:
    """Write ``per_skill.md`` (tables and claims), ``per_skill.csv``, ``claims.csv``, ``per_skill.png``,
    ``forest.png`` (with a base among the variants), ``grid.png`` and ``report.json`` into ``out`` atomically.
    """
    import pandas as pd

    from selma.reporting.claims import check_claims, claims_markdown, selma_claims

    table = world_table(rows, seed=seed)
    variants = list(dict.fromkeys(str(row["variant"]) for row in rows))
    skills = {f"world_{skill}": skill for skill in SKILLS}
    claims = check_claims(
        selma_claims(variants, skills), {str(r["variant"]): str(r["score_run"]) for r in rows}, seed=seed
    )

    def build(tmp: Path) -> None:
        markdown = _markdown(table, title)
        if claims:
            markdown += "\n## SELMA's claims on these prompts (paired bootstrap; verdict at p < 0.05)\n\n"
            markdown += claims_markdown(claims)
        if any("delta" in r for r in table):
            markdown += "\n![each variant's paired difference from base](forest.png)\n"
        markdown += "\n![the same prompts rendered by each variant](grid.png)\n"
        (tmp / "per_skill.md").write_text(markdown, encoding="utf-8")
        pd.DataFrame(table).to_csv(tmp / "per_skill.csv", index=False)
        pd.DataFrame(claims).to_csv(tmp / "claims.csv", index=False)
        _figure(table, tmp / "per_skill.png", title)
        if any("delta" in r for r in table):
            _forest(table, tmp / "forest.png", title)
        _grid(rows, tmp / "grid.png", grid_per_skill)
        by_variant: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_variant[row["variant"]].append(str(row["score_run"]))
        record = {
            "title": title,
            "config": dict(config),
            "timings_s": dict(timings),
            "runs": by_variant,
            "table": table,
            "claims": claims,
            "provenance": dict(provenance),
        }
        (tmp / "report.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")

    replace_output(out, "world-report", dict(config), build)
    names = ("per_skill.md", "per_skill.csv", "claims.csv", "per_skill.png", "forest.png", "grid.png", "report.json")
    return {name: out / name for name in names if (out / name).is_file()}


def _grid(rows: Sequence[Mapping[str, Any]], path: Path, per_skill: int) -> None:
    """The first ``per_skill`` prompts of each skill, rendered by every variant."""
    from selma.reporting.grid import image_grid

    records = read_records(rows[0]["score_run"], "prompts")
    chosen = [r for skill in SKILLS for r in [r for r in records if r["category"] == skill][:per_skill]]
    images = {
        str(row["variant"]): [Path(row["run"]) / "images" / f"{r['prompt_id']}_00.png" for r in chosen] for row in rows
    }
    image_grid(images, [r["text"] for r in chosen], path, cell=96)
