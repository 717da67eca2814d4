"""Readers for recorded VQA answers: DSG's released CSV and TIFA's evaluation-result JSON."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.errors import DataInputError, SelmaError
from selma.harness.suites.loaders import tifa_question_from
from selma.harness.suites.readers import check_unique, line_of, read_json, read_table
from selma.harness.suites.spec import Question, Suite
from selma.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answers:
    """Answers keyed by (prompt id, question id); ``None`` marks a blank answer.

    ``questions`` is set when the file carries its own questions (TIFA results).
    """

    path: Path
    answers: Mapping[tuple[str, str], str | None]
    t2i_model: str | None = None
    questions: tuple[Question, ...] = ()
    blank: tuple[str, ...] = ()


AnswerReader = Callable[[Path, Suite, "str | None", bool], Answers]
answer_formats: Registry[AnswerReader] = Registry("answer format")


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _report_blanks(path: Path, blanks: list[str], strict: bool, field_name: str) -> None:
    if not blanks:
        return
    if strict:
        raise DataInputError("blank answer (--strict)", path=path, row=blanks[0], field=field_name)
    shown = ", ".join(blanks[:5]) + (" …" if len(blanks) > 5 else "")
    log.warning("%s: %d blank answer(s) scored 0, as the official scripts do (%s)", path, len(blanks), shown)


@answer_formats.register("dsg-csv")
def read_dsg_csv(path: Path, suite: Suite, t2i_model: str | None, strict: bool) -> Answers:
    """DSG's released answers: ``item_id, question_id, answer`` (+ ``t2i_model`` when several)."""
    frame = read_table(path, ["item_id", "question_id", "answer"])
    if "t2i_model" in frame.columns:
        models = list(dict.fromkeys(frame["t2i_model"]))
        if t2i_model is None:
            if len(models) > 1:
                raise SelmaError(
                    f"{path}: answers of several t2i models ({', '.join(models)}); choose one with --t2i-model"
                )
            t2i_model = models[0]
        elif t2i_model not in models:
            raise SelmaError(f"{path}: no answers for t2i model {t2i_model!r}; the file has: {', '.join(models)}")
        frame = frame[frame["t2i_model"] == t2i_model]
    elif t2i_model is not None:
        raise SelmaError(f"{path}: --t2i-model given but the file has no t2i_model column")
    check_unique(frame, path, ["item_id", "question_id"])
    known = {(q.prompt_id, q.id) for q in suite.questions}
    prompt_ids = {p.id for p in suite.prompts}
    answers: dict[tuple[str, str], str | None] = {}
    blanks = []
    for index, row in frame.iterrows():
        item_id, qid = row["item_id"].strip(), row["question_id"].strip()
        if item_id not in prompt_ids:
            raise DataInputError(
                f"unknown prompt {item_id!r} for suite '{suite.name}'",
                path=path,
                row=line_of(frame, index),
                field="item_id",
            )
        if not qid.isdigit() or (item_id, str(int(qid))) not in known:
            raise DataInputError(
                f"prompt {item_id!r} has no question {qid!r} in suite '{suite.name}'",
                path=path,
                row=line_of(frame, index),
                field="question_id",
            )
        answer = row["answer"]
        if _blank(answer) or answer.strip().lower() == "nan":
            blanks.append(line_of(frame, index))
            answer = None
        answers[(item_id, str(int(qid)))] = answer
    _report_blanks(path, blanks, strict, "answer")
    return Answers(path, answers, t2i_model, blank=tuple(blanks))


@answer_formats.register("tifa-results")
def read_tifa_results(path: Path, suite: Suite, t2i_model: str | None, strict: bool) -> Answers:
    """TIFA's evaluation-result JSON: ``question_details[prompt id][question] = {choices, answer,
    element_type, free_form_vqa, ...}``; the free-form answer is what gets mapped and scored.
    """
    data = read_json(path)
    details = data.get("question_details") if isinstance(data, dict) else None
    if not isinstance(details, dict) or not details:
        raise DataInputError(
            "expected an object with a non-empty 'question_details'", path=path, field="question_details"
        )
    prompt_ids = {p.id for p in suite.prompts}
    suite_questions = {(q.prompt_id, q.id) for q in suite.questions}
    answers: dict[tuple[str, str], str | None] = {}
    questions: list[Question] = []
    blanks = []
    for prompt_id, per_question in details.items():
        if prompt_id not in prompt_ids:
            raise DataInputError(
                f"unknown prompt {prompt_id!r} for suite '{suite.name}'", path=path, row=f"question_details.{prompt_id}"
            )
        if not isinstance(per_question, dict) or not per_question:
            raise DataInputError(
                "expected a non-empty object of questions", path=path, row=f"question_details.{prompt_id}"
            )
        for text, item in per_question.items():
            where = f"question_details.{prompt_id}.{text!r}"
            if not isinstance(item, dict):
                raise DataInputError("expected an object", path=path, row=where)
            question = tifa_question_from({"id": prompt_id, "question": text, **item}, path, where)
            if suite_questions and (prompt_id, question.id) not in suite_questions:
                raise DataInputError(
                    f"not a question of prompt {prompt_id!r} in suite '{suite.name}'", path=path, row=where
                )
            answer = item.get("free_form_vqa")
            if _blank(answer):
                blanks.append(where)
                answer = None
            elif not isinstance(answer, str):
                raise DataInputError(
                    f"expected a string answer, got {answer!r}", path=path, row=where, field="free_form_vqa"
                )
            questions.append(question)
            answers[(prompt_id, question.id)] = answer
    _report_blanks(path, blanks, strict, "free_form_vqa")
    return Answers(path, answers, t2i_model, tuple(questions), tuple(blanks))


def detect_format(path: Path) -> str:
    """The answer format of ``path`` from its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "dsg-csv"
    if suffix == ".json":
        return "tifa-results"
    raise SelmaError(f"{path}: cannot tell the answer format from '{suffix}'; pass --answers-format")
