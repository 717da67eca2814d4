"""SELMA's claims checked on a study's own per-prompt scores, each with its difference, interval and verdict.

A claim compares two variants on the same prompts with a paired bootstrap: ``improves`` holds when
the difference is positive and significant (p < 0.05), and is ``reversed`` when it is negative and
significant; ``matches`` (self-generated data is competitive with ground truth) holds unless the
first variant is significantly worse. Claims whose variants the study lacks are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from selma.results.store import read_records
from selma.stats import paired_bootstrap


@dataclass(frozen=True)
class Claim:
    """``variant`` against ``reference`` on the prompts of ``category`` (``None``: every prompt)."""

    statement: str
    variant: str
    reference: str
    kind: Literal["improves", "matches"] = "improves"
    category: str | None = None


def selma_claims(variants: Sequence[str], skill_category: Mapping[str, str] | None = None) -> list[Claim]:
    """The paper's claims that a study of ``variants`` can test; ``skill_category`` maps a skill to the suite
    category of its prompts (the shapes world: ``world_count`` -> ``count``), so an expert is judged on
    its own skill's prompts.
    """
    from selma.recipe.variants import parse_variant

    present = set(variants)
    names = {variant: parse_variant(variant) for variant in variants}
    claims = []
    for variant, name in names.items():
        if name.kind == "expert" and not name.recipe:
            skill = name.arg or ""
            category = (skill_category or {}).get(skill)
            where = f"{category} prompts" if category else "all prompts"
            claims.append(
                Claim(f"the {skill} expert improves the base model ({where})", variant, "base", "improves", category)
            )
    if "multi" in present:
        claims.append(Claim("one multi-skill LoRA improves the base model", "multi", "base"))
    for variant in (v for v, n in names.items() if n.kind == "merged" and not n.recipe):
        if "multi" in present:
            claims.append(Claim(f"merging experts ({variant}) beats one multi-skill LoRA", variant, "multi"))
        claims.append(Claim(f"merging experts ({variant}) improves the base model", variant, "base"))
    for gt in (v for v, n in names.items() if n.kind == "gt"):
        claims.append(Claim(f"the trainer teaches: ground truth ({gt}) improves the base model", gt, "base"))
        if "multi" in present:
            claims.append(
                Claim(f"self-generated data (multi) is competitive with ground truth ({gt})", "multi", gt, "matches")
            )
    for w2s in (v for v, n in names.items() if n.kind == "w2s"):
        claims.append(Claim(f"weak-to-strong ({w2s}) improves the base model", w2s, "base"))
    for variant, name in names.items():
        if name.recipe and name.plain in present:
            claims.append(Claim(f"the data recipe {name.recipe!r} improves {name.plain}", variant, name.plain))
    return [c for c in claims if c.variant in present and c.reference in present]


def verdict(claim: Claim, delta: float, p_value: float) -> str:
    """``holds``, ``reversed`` or ``not shown`` (significance at p < 0.05)."""
    significant = p_value < 0.05
    if claim.kind == "matches":
        return "reversed" if significant and delta < 0 else "holds"
    if significant:
        return "holds" if delta > 0 else "reversed"
    return "not shown"


def check_claims(claims: Sequence[Claim], score_runs: Mapping[str, str], *, seed: int = 0) -> list[dict[str, Any]]:
    """Each claim's mean difference (variant − reference) with its paired 95 % interval, p-value and verdict;
    ``score_runs`` maps a variant to its score run folder.
    """
    per_prompt: dict[str, dict[str, float]] = {}
    categories: dict[str, str | None] = {}
    for variant, run in score_runs.items():
        records = read_records(run, "prompts")
        per_prompt[variant] = {r["prompt_id"]: float(r["score"]) for r in records}
        categories.update({r["prompt_id"]: r.get("category") for r in records})
    out = []
    for claim in claims:
        prompts = [p for p in per_prompt[claim.reference] if claim.category in (None, categories[p])]
        diff = paired_bootstrap(
            [per_prompt[claim.reference][p] for p in prompts],
            [per_prompt[claim.variant][p] for p in prompts],
            seed=seed,
        )
        delta = diff.interval.mean
        out.append(
            {
                "claim": claim.statement,
                "variant": claim.variant,
                "reference": claim.reference,
                "prompts": claim.category or "all",
                "n_prompts": len(prompts),
                "delta": round(delta, 2),
                "delta_low": round(diff.interval.low, 2),
                "delta_high": round(diff.interval.high, 2),
                "p_value": round(diff.p_value, 4),
                "verdict": verdict(claim, delta, diff.p_value),
            }
        )
    return out


def claims_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """The claims as a Markdown table."""
    lines = [
        "| claim | difference [95 % interval] | p | verdict |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['claim']} | {r['delta']:+.1f} [{r['delta_low']:+.1f}, {r['delta_high']:+.1f}] | "
            f"{r['p_value']:.3f} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"
