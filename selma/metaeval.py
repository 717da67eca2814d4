"""Meta-evaluation: how well VQA-based scores agree with human Likert ratings on TIFA-160.

From DSG's released data: ratings of 5 text-to-image models' images of the 160 TIFA-160 prompts,
and answers of 3 VQA models to 3 question sets (DSG, TIFA, VQ²A). Per image, human = mean rating
and metric = the per-image score of the shared question-answer scorer (DSG questions with their
dependencies, and without them). Agreement is Spearman's rho and Kendall's tau-b over images.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from selma.errors import DataInputError, SelmaError
from selma.results.schema import Provenance
from selma.scoring.matchers import ExactMatcher
from selma.scoring.qa import QARules, score_questions
from selma.suites.readers import check_unique, line_of, read_table
from selma.suites.spec import Prompt, Question, Suite

log = logging.getLogger(__name__)

ANSWER_FILE = re.compile(r"^(?P<vqa>[A-Za-z0-9.-]+)_(?P<qg>dsg|tifa|vq2a)\.csv$")
CHOICES = re.compile(r"Choices:\s*(?P<choices>.*?)\.\s*Answer:\s*$")


class Agreement(BaseModel):
    """Agreement of one metric (a VQA model with a question set) with human ratings."""

    model_config = ConfigDict(extra="forbid")

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n: int
    yes_no_only: bool = False
    n_questions_excluded: int = 0


class MetaEvalSummary(BaseModel):
    """Results of ``selma-bench meta-eval``: one :class:`Agreement` per ``<vqa>/<question set>``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    kind: str = "meta-eval"
    n_images: int
    t2i_models: list[str]
    results: dict[str, Agreement]
    notes: list[str]
    provenance: Provenance


@dataclass(frozen=True)
class HumanRatings:
    """Mean Likert rating per image, keyed by (t2i model, item id)."""

    mean: Mapping[tuple[str, str], float]


def read_likert(path: Path) -> HumanRatings:
    """DSG's ``tifa160-likert-anns.csv``: one row per (image, worker) rating from 1 to 5."""
    frame = read_table(path, ["t2i_model", "item_id", "answer"])
    ratings: dict[tuple[str, str], list[float]] = defaultdict(list)
    for index, row in frame.iterrows():
        try:
            value = float(row["answer"])
        except ValueError:
            value = float("nan")
        if not 1 <= value <= 5:
            raise DataInputError(
                f"expected a rating from 1 to 5, got {row['answer']!r}",
                path=path,
                row=line_of(frame, index),
                field="answer",
            )
        ratings[(row["t2i_model"], row["item_id"])].append(value)
    return HumanRatings({key: float(np.mean(values)) for key, values in ratings.items()})


YES_NO_START = re.compile(
    r"^(question:\s*)?(is|are|am|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I
)


def _choices_of(text: str, qg: str) -> tuple[str, ...] | None:
    """Choices of a released question: VQ²A questions are all yes/no; a TIFA question's choices are
    in its text (PaLI's prompts), or else a question that starts with an auxiliary verb is taken as
    yes/no and any other as multiple-choice with unknown choices (``None``).
    """
    if qg == "vq2a":
        return ("yes", "no")
    found = CHOICES.search(text)
    if found:
        return tuple(c.strip() for c in found.group("choices").split(","))
    return ("yes", "no") if YES_NO_START.match(text.strip()) else None


def _tifa_question(
    tifa_questions: Mapping[tuple[str, str], Question] | None, source_id: str | None, text: str
) -> Question | None:
    if tifa_questions is None or source_id is None:
        return None
    match = re.match(r"^Question:\s*(?P<q>.*?)\s*Choices:", text)
    return tifa_questions.get((source_id, (match.group("q") if match else text).strip().lower()))


def file_questions(
    frame: Any,
    qg: str,
    source_ids: Mapping[str, str],
    tifa_questions: Mapping[tuple[str, str], Question] | None,
) -> tuple[dict[str, list[Question]], dict[tuple[str, str, str], str | None], int]:
    """Questions and answers of a TIFA/VQ²A answer file, per image.

    Yes/no questions expect ``yes``. A multiple-choice question (TIFA) expects the answer of the
    TIFA question file when one is given; without it the question is left out and counted.
    """
    questions: dict[str, list[Question]] = defaultdict(list)
    answers: dict[tuple[str, str, str], str | None] = {}
    excluded = 0
    position: dict[tuple[str, str], int] = defaultdict(int)
    for _, row in frame.iterrows():
        model, item = row["t2i_model"], row["item_id"]
        qid = str(position[(model, item)])
        position[(model, item)] += 1
        choices, expected = _choices_of(row["question"], qg), "yes"
        if choices != ("yes", "no"):
            reference = _tifa_question(tifa_questions, source_ids.get(item), row["question"])
            if reference is None:
                excluded += 1
                continue
            choices, expected = reference.choices, reference.answer
        questions[f"{model}\0{item}"].append(
            Question(prompt_id=item, id=qid, text=row["question"], answer=expected, choices=choices)
        )
        answer = row["answer"]
        answers[(model, item, qid)] = answer if answer.strip() and answer != "nan" else None
    return questions, answers, excluded


def meta_evaluate(
    likert: Path,
    answers_dir: Path,
    dsg_suite: Suite,
    tifa_questions: Sequence[Question] | None = None,
) -> tuple[dict[str, Agreement], list[dict[str, Any]], list[str]]:
    """Agreement per ``<vqa>/<qg>`` key (plus ``<vqa>/dsg-nodep``), per-image records and notes."""
    human = read_likert(likert)
    files = sorted(p for p in answers_dir.glob("*.csv") if ANSWER_FILE.match(p.name))
    if not files:
        raise SelmaError(f"{answers_dir}: no answer files named <vqa>_<dsg|tifa|vq2a>.csv")
    source_ids = {p.id: str(p.meta.get("source_id")) for p in dsg_suite.prompts if p.meta.get("source_id")}
    tifa_index = None
    if tifa_questions is not None:
        tifa_index = {(q.prompt_id, q.text.strip().lower()): q for q in tifa_questions}
    images = sorted(human.mean)
    models = sorted({model for model, _ in images})
    results: dict[str, Agreement] = {}
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    exact = ExactMatcher()
    for path in files:
        name = ANSWER_FILE.match(path.name)
        assert name is not None
        vqa, qg = name.group("vqa"), name.group("qg")
        frame = read_table(
            path, ["t2i_model", "item_id", "question", "answer"] + (["question_id"] if qg == "dsg" else [])
        )
        frame = frame[frame["item_id"].isin({item for _, item in images})]
        variants: list[tuple[str, bool]] = [(qg, True)] + ([("dsg-nodep", False)] if qg == "dsg" else [])
        excluded = 0
        if qg == "dsg":
            check_unique(frame, path, ["t2i_model", "item_id", "question_id"])
            bad = ~frame["question_id"].str.strip().str.fullmatch(r"\d+")
            if bad.any():
                raise DataInputError(
                    f"expected an integer question id, got {frame.at[bad.idxmax(), 'question_id']!r}",
                    path=path,
                    row=line_of(frame, bad.idxmax()),
                    field="question_id",
                )
            answers = {
                (r.t2i_model, r.item_id, str(int(r.question_id))): (r.answer if r.answer.strip() else None)
                for r in frame.itertuples()
            }
            per_image_questions = None
        else:
            per_image_questions, answers, excluded = file_questions(frame, qg, source_ids, tifa_index)
            if excluded:
                how = (
                    "as their text gives choices"
                    if frame["question"].str.contains("Choices:").any()
                    else ("by their wording (approximate: the file gives no choices)")
                )
                notes.append(
                    f"{vqa}/{qg}: {excluded} questions taken as multiple-choice {how} were left out, as no TIFA "
                    "question file was given (--tifa-questions); the score is the share of 'yes' on the rest"
                )
        for key_qg, use_deps in variants:
            rules = QARules(missing_prompts="zero", use_dependencies=use_deps)
            metric, people = [], []
            for model in models:
                items = [item for m, item in images if m == model]
                model_answers = {(item, qid): a for (m, item, qid), a in answers.items() if m == model}
                if per_image_questions is None:
                    questions: Sequence[Question] = dsg_suite.questions
                else:
                    questions = [q for item in items for q in per_image_questions.get(f"{model}\0{item}", [])]
                scored = score_questions([Prompt(item, "") for item in items], questions, model_answers, exact, rules)
                for record in scored.prompts:
                    metric.append(record["score"])
                    people.append(human.mean[(model, record["prompt_id"])])
                    records.append(
                        {
                            "key": f"{vqa}/{key_qg}",
                            "t2i_model": model,
                            "item_id": record["prompt_id"],
                            "metric": record["score"],
                            "human": human.mean[(model, record["prompt_id"])],
                            "answered": record["answered"],
                        }
                    )
            rho = stats.spearmanr(metric, people)
            tau = stats.kendalltau(metric, people, variant="b")
            results[f"{vqa}/{key_qg}"] = Agreement(
                spearman=float(rho.statistic),
                spearman_p=float(rho.pvalue),
                kendall=float(tau.statistic),
                kendall_p=float(tau.pvalue),
                n=len(metric),
                yes_no_only=bool(excluded),
                n_questions_excluded=excluded,
            )
    return dict(sorted(results.items())), records, notes
