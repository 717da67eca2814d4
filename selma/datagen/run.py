"""The prompt-generation loop: sample 3 examples from the pool, ask the LLM, filter, repeat.

As in SELMA (after Self-Instruct): the pool starts with the skill's seed examples; each request
shows 3 examples drawn from the pool; each parsed description is rejected when its ROUGE-L F
(``rouge-score``, no stemming) with any pooled prompt exceeds 0.8, otherwise it joins the pool.
Requests continue until N prompts are accepted. Every accepted prompt is appended to the output
JSONL at once, and each request's randomness comes from (seed, skill, request number), so an
interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selma import __version__
from selma.datagen.backends import Backend
from selma.datagen.icl import N_EXAMPLES, build_request, parse_completion
from selma.datagen.skills import Skill
from selma.errors import DataInputError, SelmaError
from selma.results.store import config_hash, make_provenance, now

ROUGE_THRESHOLD = 0.8


def _request_seed(seed: int, skill: str, request: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{skill}\0{request}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class RougeFilter:
    """Rejects a candidate whose ROUGE-L F with any pooled text exceeds the threshold."""

    def __init__(self, threshold: float = ROUGE_THRESHOLD) -> None:
        from rouge_score import rouge_scorer

        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.threshold = threshold

    def max_similarity(self, candidate: str, pool: Sequence[str]) -> float:
        """The highest ROUGE-L F of ``candidate`` against ``pool``."""
        return max((self.scorer.score(text, candidate)["rougeL"].fmeasure for text in pool), default=0.0)

    def accepts(self, candidate: str, pool: Sequence[str]) -> bool:
        """Whether ``candidate`` is different enough from every pooled text."""
        return self.max_similarity(candidate, pool) <= self.threshold


def _read_existing(out: Path) -> list[dict[str, Any]]:
    rows = []
    if out.is_file():
        for number, line in enumerate(out.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataInputError(
                    "not valid JSON (a damaged prompt file?)", path=out, row=f"line {number}"
                ) from None
            rows.append(row)
    return rows


def generate_prompts(
    skills: Sequence[Skill],
    n: int,
    backend: Backend,
    out: Path,
    *,
    seed: int = 0,
    max_requests: int | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``n`` accepted prompts per skill to ``out`` (JSONL ``{id, text, skill, request}``)."""
    from tqdm.auto import tqdm

    started = now()
    config = {
        "command": "datagen",
        "skills": [{"name": s.name, "rules": s.rules, "seeds": s.seeds} for s in skills],
        "n": n,
        "seed": seed,
        "backend": backend.describe(),
        "rouge_threshold": ROUGE_THRESHOLD,
        "version": __version__,
    }
    digest = config_hash({k: v for k, v in config.items() if k != "n"})
    sidecar = out.with_name(out.name + ".provenance.json")
    if sidecar.is_file() and json.loads(sidecar.read_text(encoding="utf-8"))["config_hash"] != digest:
        raise SelmaError(f"{out} was made with other skills, backend or seed; choose another --out")
    existing = _read_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rouge = RougeFilter()
    max_requests = max_requests or max(50, 10 * n)
    counts: dict[str, int] = {}
    with out.open("a", encoding="utf-8") as handle:
        for skill in skills:
            mine = [row for row in existing if row.get("skill") == skill.name]
            pool = list(skill.seeds) + [row["text"] for row in mine]
            accepted = len(mine)
            # Resume inside the last request: its already-accepted prompts are in the pool and are
            # rejected as duplicates, the rest is judged exactly as in an uninterrupted run.
            request = max((row["request"] for row in mine), default=0)
            bar = tqdm(total=n, initial=min(accepted, n), desc=f"datagen {skill.name}", disable=not progress)
            while accepted < n:
                if request >= max_requests:
                    raise SelmaError(
                        f"skill '{skill.name}': only {accepted} of {n} prompts accepted after {request} requests; "
                        "the LLM's completions are unusable or too similar to the pool"
                    )
                request_seed = _request_seed(seed, skill.name, request)
                visible = len(skill.seeds) + sum(1 for row in mine if row["request"] < request)
                examples = random.Random(request_seed).sample(pool[:visible], N_EXAMPLES)
                completion = backend.complete(build_request(skill, examples), seed=request_seed)
                for text in parse_completion(completion):
                    if accepted >= n:
                        break
                    if skill.max_words and len(text.split()) > 2 * skill.max_words:
                        continue
                    if not rouge.accepts(text, pool):
                        continue
                    pool.append(text)
                    row = {"id": f"{skill.name}_{accepted:05d}", "text": text, "skill": skill.name, "request": request}
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    handle.flush()
                    mine.append(row)
                    accepted += 1
                    bar.update(1)
                request += 1
            bar.close()
            counts[skill.name] = accepted
    provenance = make_provenance(config, {}, seed=seed, started_at=started)
    sidecar.write_text(
        json.dumps({"config_hash": digest, "provenance": provenance.model_dump()}, indent=2), encoding="utf-8"
    )
    return counts
