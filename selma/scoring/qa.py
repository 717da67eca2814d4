"""The question-answer scorer: one mechanism for DSG, TIFA and the meta-evaluation.

A question scores 1 when its answer, mapped onto the question's choices by a matcher, equals the
expected answer. With the dependency rule, a question whose parent scored 0 (raw, one level) is
zeroed. A prompt's score is the mean over its questions; a question left without an answer
counts 0. A prompt without any answer counts 0 or is left out, by the suite's rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from selma.scoring.matchers import Matcher
from selma.suites.spec import Prompt, Question


@dataclass(frozen=True)
class QARules:
    """Suite-specific choices of the shared scorer.

    ``missing_prompts``: ``"zero"`` counts an unanswered prompt as 0 (DSG's official script),
    ``"skip"`` scores only answered prompts (TIFA: only prompts with images are scored).
    """

    missing_prompts: Literal["zero", "skip"] = "zero"
    use_dependencies: bool = True


@dataclass(frozen=True)
class QAScores:
    """Per-question and per-prompt records (scores in 0-100 per prompt, 0/1 per question)."""

    questions: list[dict[str, Any]]
    prompts: list[dict[str, Any]]


def score_questions(
    prompts: Sequence[Prompt],
    questions: Sequence[Question],
    answers: Mapping[tuple[str, str], str | None],
    matcher: Matcher,
    rules: QARules,
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
        if not answered and rules.missing_prompts == "skip":
            continue
        items = by_prompt.get(prompt.id, [])
        raw: dict[str, int] = {}
        rows = []
        for question in items:
            key = (prompt.id, question.id)
            answer = answers.get(key)
            matched = None if answer is None else matcher.match(answer, question.choices)
            raw[question.id] = int(matched is not None and matched == question.answer)
            rows.append((question, answer, matched, key in answers))
        own: list[dict[str, Any]] = []
        for question, answer, matched, present in rows:
            zeroed = rules.use_dependencies and any(raw.get(parent, 0) == 0 for parent in question.parents)
            own.append(
                {
                    "prompt_id": prompt.id,
                    "question_id": question.id,
                    "question": question.text,
                    "element_type": question.element_type,
                    "parents": list(question.parents),
                    "answer": answer,
                    "matched": matched,
                    "expected": question.answer,
                    "answered": present,
                    "raw": raw[question.id],
                    "score": 0 if zeroed else raw[question.id],
                }
            )
        question_records.extend(own)
        n = len(own)
        with_dep = 100.0 * sum(r["score"] for r in own) / n if answered and n else 0.0
        without = 100.0 * sum(r["raw"] for r in own) / n if answered and n else 0.0
        prompt_records.append(
            {
                "prompt_id": prompt.id,
                "text": prompt.text,
                "category": prompt.category,
                "answered": answered,
                "n_questions": n,
                "score": with_dep,
                "score_no_dependency": without,
            }
        )
    return QAScores(question_records, prompt_records)
