"""The question-answer scorer: one mechanism for DSG, TIFA and the meta-evaluation.

A question scores 1 when its answer, mapped onto the question's choices by the convention's
matcher, equals the expected answer (blank answers score 0). The convention's dependency rule
then zeroes questions whose parents failed. A prompt's score is the mean over its answered
questions (the official scripts divide by the questions that have an answer row); a prompt
without any answer counts 0 or is left out, by the convention.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from selma.harness.scoring.conventions import QAConvention
from selma.harness.scoring.matchers import Matcher
from selma.harness.suites.spec import Prompt, Question


@dataclass(frozen=True)
class QAScores:
    """Per-question and per-prompt records (scores in 0-100 per prompt, 0/1 per question)."""

    questions: list[dict[str, Any]]
    prompts: list[dict[str, Any]]


def zero_dependents(questions: Sequence[Question], raw: Mapping[str, int], rule: str) -> dict[str, int]:
    """Scores after the dependency rule ``rule`` (``raw``, ``inplace`` or ``none``) of one prompt.

    ``raw`` (DSG's ``calc_vqa_score``): a question is zeroed when any parent's *raw* score is 0;
    parent 0 means none. ``inplace`` (SELMA's ``DSG/evaluation.py``): the raw dependency cell is
    split on commas without stripping, ``'0'`` and ids that are not questions are skipped, and
    questions are zeroed in place in their order, so a parent zeroed earlier zeroes its children.
    """
    scores = dict(raw)
    if rule == "none":
        return scores
    if rule == "raw":
        return {
            q.id: 0 if any(raw.get(parent, 0) == 0 for parent in q.parents) else raw[q.id]
            for q in questions
            if q.id in raw
        }
    for q in questions:
        if q.id not in scores:
            continue
        cell = q.dependency if q.dependency is not None else (",".join(q.parents) or "0")
        for parent in cell.split(","):
            if parent == "0":
                continue
            if parent in scores and scores[parent] == 0:
                scores[q.id] = 0
                break
    return scores


def score_questions(
    prompts: Sequence[Prompt],
    questions: Sequence[Question],
    answers: Mapping[tuple[str, str], str | None],
    matcher: Matcher,
    convention: QAConvention,
) -> QAScores:
    """Score ``answers`` (keyed by (prompt id, question id); ``None`` = blank) against ``questions``."""
    by_prompt: dict[str, list[Question]] = defaultdict(list)
    for question in questions:
        by_prompt[question.prompt_id].append(question)
    answered_prompts = {prompt_id for prompt_id, _ in answers}

    question_records: list[dict[str, Any]] = []
    prompt_records: list[dict[str, Any]] = []
    for prompt in prompts:
        answered = prompt.id in answered_prompts
        if not answered and convention.missing_prompts == "skip":
            continue
        items = [q for q in by_prompt.get(prompt.id, []) if (prompt.id, q.id) in answers]
        raw: dict[str, int] = {}
        matched_of: dict[str, str | None] = {}
        for question in items:
            answer = answers[(prompt.id, question.id)]
            matched = None if answer is None else matcher.match(answer, question.choices)
            matched_of[question.id] = matched
            raw[question.id] = int(matched is not None and matched == question.answer)
        final = zero_dependents(items, raw, convention.dependencies)
        own = [
            {
                "prompt_id": prompt.id,
                "question_id": question.id,
                "question": question.text,
                "element_type": question.element_type,
                "detailed_type": question.detailed_type,
                "parents": list(question.parents),
                "answer": answers[(prompt.id, question.id)],
                "matched": matched_of[question.id],
                "expected": question.answer,
                "raw": raw[question.id],
                "score": final[question.id],
            }
            for question in items
        ]
        question_records.extend(own)
        n = len(own)
        prompt_records.append(
            {
                "prompt_id": prompt.id,
                "text": prompt.text,
                "category": prompt.category,
                "answered": answered,
                "n_questions": n,
                "n_unanswered": len(by_prompt.get(prompt.id, [])) - n if answered else 0,
                "score": 100.0 * sum(r["score"] for r in own) / n if n else 0.0,
                "score_no_dependency": 100.0 * sum(r["raw"] for r in own) / n if n else 0.0,
            }
        )
    return QAScores(question_records, prompt_records)
