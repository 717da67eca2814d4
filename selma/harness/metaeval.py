"""Meta-evaluation: how well VQA-based scores agree with human Likert ratings on TIFA-160.

A port of j-min/DSG's ``scripts/tifa160_correlation.py`` (@ 7330119) on DSG's released data:
ratings of 5 text-to-image models' images of the 160 TIFA-160 prompts, and answers of 3 VQA
models to 3 question sets (DSG, TIFA, VQ²A). Per image, human = the mean rating; metric = the
share of questions whose answer equals its gold answer exactly (``calc_vqa_score``): ``yes`` for
DSG, VQ²A and TIFA's yes/no questions, TIFA's own answer for its multiple-choice questions; DSG
questions with the one-level dependency rule (and without it, ``dsg-nodep``); an image without
answers scores 0. Agreement is Spearman's rho and Kendall's tau-b over the 800 images.

TIFA's gold answers come from ``tifa_v1.0_question_answers.json`` (joined to the answer files by
position within each prompt, as the official loader does). Without that file they are rebuilt
from the answer files: PaLI's question text carries every question's choices; the gold answer of
a multiple-choice question is its first choice (TIFA's question generator lists it first), except
a counting question's, which is the number its caption gives. The result then says so.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from selma.errors import DataInputError, SelmaError
from selma.harness.scoring.conventions import default_convention
from selma.harness.scoring.matchers import ExactMatcher
from selma.harness.scoring.qa import score_questions
from selma.harness.suites.readers import check_unique, line_of, read_table
from selma.harness.suites.spec import Prompt, Question, Suite
from selma.results.schema import Provenance

log = logging.getLogger(__name__)

ANSWER_FILE = re.compile(r"^(?P<vqa>[A-Za-z0-9.-]+)_(?P<qg>dsg|tifa|vq2a)\.csv$")
WITH_CHOICES = re.compile(r"^Question: (?P<question>.*) Choices: (?P<choices>.*)\. Answer:$")
YES_NO = ("yes", "no")


class Agreement(BaseModel):
    """Agreement of one metric (a VQA model with a question set) with human ratings."""

    model_config = ConfigDict(extra="forbid")

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n: int
    tifa_gold: Literal["question-file", "rebuilt"] | None = None


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


@dataclass(frozen=True)
class TifaGold:
    """Choices and gold answer of each TIFA question of a prompt, in order; where they came from."""

    items: Mapping[str, list[tuple[tuple[str, ...], str]]]
    source: Literal["question-file", "rebuilt"]
    notes: tuple[str, ...] = ()


_NUMBER_WORDS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}


def caption_count(question: str, caption: str) -> str | None:
    """The number a caption gives for what a counting question asks about ("how many red flowers ...").

    The nearest number (a digit or a number word) before the question's noun phrase in the
    caption; without the phrase, the caption's only number; otherwise ``None``.
    """
    found = re.match(r"^how many (?P<what>.+?) (?:are|is)\b", question.strip().lower())
    words = re.findall(r"[a-z0-9]+", caption.lower())
    numbers = [
        (i, w if w.isdigit() else _NUMBER_WORDS[w]) for i, w in enumerate(words) if w.isdigit() or w in _NUMBER_WORDS
    ]
    if found:
        phrase = re.findall(r"[a-z0-9]+", found.group("what"))
        for start in range(len(words) - len(phrase) + 1):
            if words[start : start + len(phrase)] == phrase:
                before = [value for position, value in numbers if position < start]
                if before:
                    return before[-1]
    return numbers[0][1] if len(numbers) == 1 else None


def rebuilt_gold(question: str, choices: Sequence[str], caption: str) -> str:
    """The gold answer of a TIFA question rebuilt from its text: ``yes`` for yes/no questions, the
    caption's number for a counting question, otherwise the first choice.
    """
    if tuple(choices) == YES_NO:
        return "yes"
    if all(c.isdigit() for c in choices):
        count = caption_count(question, caption)
        if count in choices:
            return str(count)
    return choices[0]


def tifa_gold_from_file(questions: Sequence[Question], source_ids: Mapping[str, str]) -> TifaGold:
    """Gold answers from TIFA's question file, per TIFA-160 item in the file's order (the official join)."""
    by_source: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
    for q in questions:
        by_source[q.prompt_id].append((tuple(q.choices), q.answer))
    items = {item: by_source[source] for item, source in source_ids.items() if source in by_source}
    missing = sorted(set(source_ids) - set(items))
    if missing:
        raise SelmaError(
            f"the TIFA question file has no questions for {len(missing)} TIFA-160 prompts ({missing[0]}, ...)"
        )
    return TifaGold(items, "question-file")


def tifa_gold_rebuilt(files: Sequence[Path], captions: Mapping[str, str]) -> TifaGold | None:
    """Gold answers rebuilt from an answer file whose question text carries the choices (PaLI's)."""
    for path in files:
        frame = read_table(path, ["t2i_model", "item_id", "question"])
        parsed = frame["question"].str.fullmatch(WITH_CHOICES.pattern)
        if not parsed.all():
            continue
        first_model = frame[frame["t2i_model"] == frame["t2i_model"].iloc[0]]
        items: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        for row in first_model.itertuples():
            match = WITH_CHOICES.match(row.question)
            assert match is not None
            choices = tuple(match.group("choices").split(", "))
            gold = rebuilt_gold(match.group("question"), choices, captions.get(row.item_id, ""))
            items[row.item_id].append((choices, gold))
        note = (
            f"TIFA's gold answers were rebuilt from {path.name} (first choice; a counting question's from its "
            "caption): an approximation; pass --tifa-questions tifa_v1.0_question_answers.json for the official ones"
        )
        return TifaGold(dict(items), "rebuilt", (note,))
    return None


def _answer(value: str) -> str | None:
    return value if value.strip() else None


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
    images = sorted(human.mean)
    models = sorted({model for model, _ in images})
    items = sorted({item for _, item in images})
    source_ids = {p.id: str(p.meta.get("source_id")) for p in dsg_suite.prompts if p.meta.get("source_id")}
    notes: list[str] = []
    tifa_files = [p for p in files if p.name.endswith("_tifa.csv")]
    gold: TifaGold | None = None
    if tifa_files:
        if tifa_questions is not None:
            gold = tifa_gold_from_file(tifa_questions, source_ids)
        else:
            gold = tifa_gold_rebuilt(tifa_files, {p.id: p.text for p in dsg_suite.prompts})
            if gold is None:
                notes.append(
                    "TIFA answer files were skipped: their multiple-choice questions need gold answers "
                    "(--tifa-questions) or an answer file whose questions carry their choices (PaLI's)"
                )
        if gold is not None:
            notes.extend(gold.notes)

    dsg = default_convention("dsg")
    exact = ExactMatcher()
    results: dict[str, Agreement] = {}
    records: list[dict[str, Any]] = []
    for path in files:
        name = ANSWER_FILE.match(path.name)
        assert name is not None
        vqa, qg = name.group("vqa"), name.group("qg")
        if qg == "tifa" and gold is None:
            continue
        frame = read_table(
            path, ["t2i_model", "item_id", "question", "answer"] + (["question_id"] if qg == "dsg" else [])
        )
        frame = frame[frame["item_id"].isin(items) & frame["t2i_model"].isin(models)]
        per_image = _image_questions(frame, path, qg, dsg_suite, gold)
        notes.extend(_check_coverage(per_image, path, qg, models, items, dsg_suite, gold))
        # only DSG's question files carry dependencies (TIFA's and VQ²A's questions have none)
        rule = dsg.dependencies if qg == "dsg" else "none"
        variants = [(qg, rule)] + ([("dsg-nodep", "none")] if qg == "dsg" else [])
        for key_qg, rule in variants:
            convention = replace(dsg, dependencies=rule, missing_prompts="zero")
            metric, people = [], []
            for model in models:
                questions = [q for item in items for q in per_image.questions.get((model, item), [])]
                answers = {(item, qid): a for (m, item, qid), a in per_image.answers.items() if m == model}
                prompts = [Prompt(item, "") for item in items if (model, item) in human.mean]
                scored = score_questions(prompts, questions, answers, exact, convention)
                for record in scored.prompts:
                    value = record["score"]
                    metric.append(value)
                    people.append(human.mean[(model, record["prompt_id"])])
                    records.append(
                        {
                            "key": f"{vqa}/{key_qg}",
                            "t2i_model": model,
                            "item_id": record["prompt_id"],
                            "metric": value,
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
                tifa_gold=gold.source if qg == "tifa" and gold is not None else None,
            )
    return dict(sorted(results.items())), records, notes


def _check_coverage(
    per_image: _ImageQuestions,
    path: Path,
    qg: str,
    models: list[str],
    items: list[str],
    dsg_suite: Suite,
    gold: TifaGold | None,
) -> list[str]:
    """Refuse an answer file that misses rated images or questions (a truncated file would otherwise give a
    plausible, wrong correlation); a prompt no model has answers for (DSG's ``tifa160_134``) is noted.
    """
    expected: dict[str, int] = {}
    if qg == "dsg":
        for q in dsg_suite.questions:
            expected[q.prompt_id] = expected.get(q.prompt_id, 0) + 1
    elif qg == "tifa" and gold is not None:
        expected = {item: len(questions) for item, questions in gold.items.items()}
    else:
        for (_, item), questions in per_image.questions.items():
            expected[item] = max(expected.get(item, 0), len(questions))
    unanswered = [item for item in items if not any((m, item) in per_image.questions for m in models)]
    for model in models:
        for item in items:
            if item in unanswered:
                continue
            have = len(per_image.questions.get((model, item), []))
            if have != expected.get(item, have):
                raise DataInputError(
                    f"answers to {have} of the {expected[item]} questions of {model}'s image of {item}: "
                    "a truncated or incomplete answer file",
                    path=path,
                )
    if unanswered:
        return [f"{path.name}: no answers for {', '.join(unanswered)} (scored 0, as the official script does)"]
    return []


@dataclass(frozen=True)
class _ImageQuestions:
    questions: Mapping[tuple[str, str], list[Question]]
    answers: Mapping[tuple[str, str, str], str | None]


def _image_questions(frame: Any, path: Path, qg: str, dsg_suite: Suite, gold: TifaGold | None) -> _ImageQuestions:
    """Each image's questions (with their gold answers) and answers, from one answer file."""
    questions: dict[tuple[str, str], list[Question]] = defaultdict(list)
    answers: dict[tuple[str, str, str], str | None] = {}
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
        suite_questions = {(q.prompt_id, q.id): q for q in dsg_suite.questions}
        for index, row in frame.iterrows():
            key = (row["item_id"], str(int(row["question_id"])))
            if key not in suite_questions:
                raise DataInputError(
                    f"prompt {key[0]!r} has no question {key[1]!r} in DSG-1K",
                    path=path,
                    row=line_of(frame, index),
                    field="question_id",
                )
            questions[(row["t2i_model"], key[0])].append(suite_questions[key])
            answers[(row["t2i_model"], *key)] = _answer(row["answer"])
        return _ImageQuestions(questions, answers)
    position: dict[tuple[str, str], int] = defaultdict(int)
    for index, row in frame.iterrows():
        model, item = row["t2i_model"], row["item_id"]
        k = position[(model, item)]
        position[(model, item)] += 1
        choices, expected = YES_NO, "yes"
        if qg == "tifa":
            assert gold is not None
            known = gold.items.get(item, [])
            if k >= len(known):
                raise DataInputError(
                    f"prompt {item!r} has {len(known)} TIFA questions, this is question {k + 1}",
                    path=path,
                    row=line_of(frame, index),
                )
            choices, expected = known[k]
            if choices == YES_NO:
                expected = "yes"  # the official script takes 'yes' as every yes/no question's gold answer
        questions[(model, item)].append(
            Question(prompt_id=item, id=str(k + 1), text=row["question"], answer=expected, choices=choices)
        )
        answers[(model, item, str(k + 1))] = _answer(row["answer"])
    return _ImageQuestions(questions, answers)


def run_meta_eval(
    likert: Path,
    answers_dir: Path,
    locator: Any,
    *,
    tifa_questions: Path | None = None,
    out: Path | None = None,
) -> tuple[MetaEvalSummary, list[dict[str, Any]]]:
    """:func:`meta_evaluate` with its provenance, written to ``out`` (summary and per-image records) if given."""
    from selma import __version__
    from selma.harness.suites import load_suite
    from selma.harness.suites.loaders import read_tifa_questions
    from selma.io import file_digest
    from selma.results.store import make_provenance, now, write_run

    started = now()
    suite = load_suite("tifa160", locator)
    questions = read_tifa_questions(tifa_questions) if tifa_questions else None
    results, records, notes = meta_evaluate(likert, answers_dir, suite, questions)
    read = [
        likert,
        *sorted(answers_dir.glob("*.csv")),
        *suite.files.values(),
        *([tifa_questions] if tifa_questions else []),
    ]
    config = {
        "command": "meta-eval",
        "likert": str(likert),
        "answers": str(answers_dir),
        "tifa_questions": str(tifa_questions) if tifa_questions else None,
        "reference": "j-min/DSG @ 7330119 scripts/tifa160_correlation.py",
        "version": __version__,
    }
    summary = MetaEvalSummary(
        n_images=len({(r["t2i_model"], r["item_id"]) for r in records}),
        t2i_models=sorted({r["t2i_model"] for r in records}),
        results=results,
        notes=list(suite.notes) + notes,
        provenance=make_provenance(config, {str(p): file_digest(p) for p in read}, seed=0, started_at=started),
    )
    if out is not None:
        write_run(out, summary, {"images.jsonl": records})
    return summary, records
