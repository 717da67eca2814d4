"""The prompt-generation loop, as SELMA's ``llm/prompt_generation.py`` runs it (after Self-Instruct).

Each round builds 5 requests, each showing 3 examples sampled from the pool (the skill's seeds
and every prompt accepted before the round), and sends them as one batch. Every parsed
description is then judged in order: it is rejected when its ROUGE-L F (``rouge-score``, no
stemming) with any pooled prompt exceeds 0.8, otherwise it joins the pool at once (so later
candidates of the same round are compared with it). Rounds continue until N prompts are accepted;
where SELMA keeps the whole last round (so it may return a few more than N), exactly N are kept,
and an empty description (which SELMA's filter lets through) is dropped.

Two deliberate additions: the examples are sampled with a seeded generator (SELMA's are not
seeded), from (seed, skill, round, request), so a run is repeatable; and every accepted prompt is
appended to the output at once, so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.io import atomic_write_json, read_jsonl
from selma.recipe.datagen.backends import Backend
from selma.recipe.datagen.icl import build_request, parse_completion
from selma.recipe.datagen.skills import Skill
from selma.results.store import make_provenance, now
from selma.stage import claim, fault_point


@dataclass(frozen=True)
class GenerationSettings:
    """SELMA's prompt-generation settings (``llm/prompt_generation.py``)."""

    n_examples: int = 3
    requests_per_round: int = 5
    rouge_threshold: float = 0.8


class RougeFilter:
    """Rejects a candidate whose ROUGE-L F with any pooled text exceeds the threshold."""

    def __init__(self, threshold: float = GenerationSettings.rouge_threshold) -> None:
        self.threshold = threshold
        self._scorer: Any = None  # rouge_score imports nltk (seconds): only when a candidate is compared

    def max_similarity(self, candidate: str, pool: Sequence[str]) -> float:
        """The highest ROUGE-L F of ``candidate`` against ``pool``."""
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        return max((self._scorer.score(text, candidate)["rougeL"].fmeasure for text in pool), default=0.0)

    def accepts(self, candidate: str, pool: Sequence[str]) -> bool:
        """Whether ``candidate`` is different enough from every pooled text."""
        return self.max_similarity(candidate, pool) <= self.threshold


def _request_seed(seed: int, skill: str, request: int, k: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{skill}\0{request}\0{k}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


PROMPT_FIELDS = {"id": str, "text": str, "skill": str, "request": int}


def _read_existing(out: Path) -> list[dict[str, Any]]:
    """The prompts already accepted, validated (a damaged file is an error naming the line and field)."""
    return read_jsonl(out, PROMPT_FIELDS) if out.is_file() else []


def generate_prompts(
    skills: Sequence[Skill],
    n: int,
    backend: Backend,
    out: Path,
    *,
    seed: int = 0,
    settings: GenerationSettings | None = None,
    max_rounds: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, int]:
    """Write ``n`` accepted prompts per skill to ``out`` (JSONL ``{id, text, skill, request}``).

    ``out`` is claimed first: a file made with other skills, backend, settings or seed is refused
    (``force`` starts it afresh); the same settings with a larger ``n`` continue it.
    """
    from tqdm.auto import tqdm

    settings = settings or GenerationSettings()
    started = now()
    config = {
        "command": "datagen",
        "skills": [{"name": s.name, "instruction": s.instruction, "seeds": s.seeds} for s in skills],
        "n": n,
        "seed": seed,
        "backend": backend.describe(),
        "settings": asdict(settings),
        "version": __version__,
    }
    claimed = claim(out, "prompt file", config, force=force, resumable=["n"], folder=False)
    existing = _read_existing(out)
    have = {skill.name: sum(1 for row in existing if row.get("skill") == skill.name) for skill in skills}
    if claimed.complete and all(count >= n for count in have.values()):
        return have  # finished before: the file, its marker and its provenance stay as they are
    rouge = RougeFilter(settings.rouge_threshold)
    max_rounds = max_rounds or max(20, 4 * n)
    counts: dict[str, int] = {}
    with out.open("a", encoding="utf-8") as handle:
        for skill in skills:
            mine = [row for row in existing if row.get("skill") == skill.name]
            pool = list(skill.seeds) + [row["text"] for row in mine]
            accepted = len(mine)
            # Resume inside the last round: its accepted prompts are already in the pool and are rejected
            # as duplicates; the requests sample only what was pooled before the round, as before.
            request = max((row["request"] for row in mine), default=0)
            bar = tqdm(total=n, initial=min(accepted, n), desc=f"datagen {skill.name}", disable=not progress)
            while accepted < n:
                if request >= max_rounds:
                    raise SelmaError(
                        f"skill '{skill.name}': only {accepted} of {n} prompts accepted after {request} rounds; "
                        "the LLM's completions are unusable or too similar to the pool"
                    )
                visible = pool[: len(skill.seeds) + sum(1 for row in mine if row["request"] < request)]
                seeds = [_request_seed(seed, skill.name, request, k) for k in range(settings.requests_per_round)]
                requests = [build_request(skill, random.Random(s).sample(visible, settings.n_examples)) for s in seeds]
                for completion in backend.complete_many(requests, seeds=seeds):
                    for text in parse_completion(completion, settings.n_examples):
                        # SELMA keeps an empty description (its ROUGE-L with anything is 0); one is useless here
                        if accepted >= n or not text.strip() or not rouge.accepts(text, pool):
                            continue
                        pool.append(text)
                        row = {
                            "id": f"{skill.name}_{accepted:05d}",
                            "text": text,
                            "skill": skill.name,
                            "request": request,
                        }
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                        handle.flush()
                        mine.append(row)
                        accepted += 1
                        bar.update(1)
                        fault_point("datagen.prompt")
                request += 1
            bar.close()
            counts[skill.name] = accepted
    provenance = make_provenance(config, {}, seed=seed, started_at=started)
    atomic_write_json(
        out.with_name(out.name + ".provenance.json"),
        {"config_hash": claimed.digest, "provenance": provenance.model_dump()},
    )
    claimed.finish({"counts": counts})
    return counts
