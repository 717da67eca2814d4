"""Suite loaders, one per file format, selected by a suite's ``format`` and driven by its ``options``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from selma.errors import DataInputError
from selma.harness.suites.readers import (
    check_non_empty,
    check_unique,
    line_of,
    read_json,
    read_table,
    require_str,
)
from selma.harness.suites.spec import Prompt, Question, SuiteSpec
from selma.io import read_jsonl
from selma.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """What a loader returns: prompts, questions and notes about the data."""

    prompts: tuple[Prompt, ...]
    questions: tuple[Question, ...] = ()
    notes: tuple[str, ...] = ()


Loader = Callable[[SuiteSpec, Mapping[str, Path]], Loaded]
loaders: Registry[Loader] = Registry("suite format")


def _source_of(item_id: str) -> str:
    return item_id.rsplit("_", 1)[0]


@loaders.register("dsg_csv")
def load_dsg_csv(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """DSG's annotation CSV: one row per question, with its parents in ``dependency``.

    Parents follow the official loader (j-min/DSG ``dsg/data_utils.py``): a cell is split on
    commas and each piece must be an integer after stripping (0 = none). When any cell of a
    prompt fails that, the official loader drops *every* dependency of the prompt, and so does
    this one (ten rows of DSG-1K carry text such as ``5, right``; their prompts are named in a
    note). Parents that are not questions of the prompt (``tifa160_134`` depends on a question 1
    it does not have) are skipped with a note: the official scorer would fail on them. The raw
    cell is kept on each question for SELMA's scorer, which parses it differently. A question's
    broad type comes from its ``tuple`` the official way (``other`` counts as attribute).
    """
    path = files["questions"]
    opts = spec.options
    frame = read_table(
        path, ["item_id", "text", "proposition_id", "dependency", "category_broad", "question_natural_language"]
    )
    check_non_empty(frame, path, ["item_id", "text", "proposition_id", "question_natural_language"])
    bad_id = ~frame["proposition_id"].str.strip().str.fullmatch(r"\d+")
    if bad_id.any():
        index = bad_id.idxmax()
        raise DataInputError(
            f"expected an integer question id, got {frame.at[index, 'proposition_id']!r}",
            path=path,
            row=line_of(frame, index),
            field="proposition_id",
        )
    prefix = opts.get("id_prefix")
    if prefix:
        frame = frame[frame["item_id"].str.startswith(f"{prefix}_")]
        if frame.empty:
            raise DataInputError(f"no rows with item_id starting '{prefix}_'", path=path, field="item_id")
    check_unique(frame, path, ["item_id", "proposition_id"])

    source_ids: dict[str, str] = {}
    if opts.get("categories_from_likert"):
        likert = read_table(files["likert"], ["item_id", "source_id"])
        source_ids = dict(zip(likert["item_id"], likert["source_id"], strict=True))
    category_map: Mapping[str, str] = opts.get("categories", {})

    prompts: dict[str, Prompt] = {}
    questions: list[Question] = []
    dropped: list[str] = []
    dangling: list[str] = []
    for item_id, rows in frame.groupby(frame["item_id"].str.strip(), sort=False):
        first = rows.index[0]
        prompts[item_id] = _dsg_prompt(
            spec, files, item_id, rows.at[first, "text"], source_ids, category_map, frame, first
        )
        parents = official_dsg_parents(rows["dependency"].tolist())
        if parents is None:
            dropped.append(item_id)
        known = set(rows["proposition_id"].str.strip().map(lambda q: str(int(q))))
        for position, (_, row) in enumerate(rows.iterrows()):
            mine = tuple(str(p) for p in (parents[position] if parents else ()) if p != 0)
            kept = tuple(p for p in mine if p in known)
            if kept != mine:
                dangling.append(item_id)
            questions.append(
                Question(
                    prompt_id=item_id,
                    id=str(int(row["proposition_id"])),
                    text=row["question_natural_language"],
                    parents=kept,
                    element_type=_dsg_question_type(row),
                    dependency=row["dependency"],
                    detailed_type=row.get("category_detailed") or None,
                )
            )
    notes = []
    if dropped:
        notes.append(
            f"{len(dropped)} prompt(s) have non-numeric dependency text and lose all their dependencies, as in "
            f"the official DSG loader ({', '.join(dropped)})"
        )
    if dangling:
        notes.append(f"skipped parents that are not questions of the prompt ({', '.join(sorted(set(dangling)))})")
    for note in notes:
        log.warning("suite %s: %s", spec.name, note)
    return Loaded(tuple(prompts.values()), tuple(questions), tuple(notes))


def official_dsg_parents(cells: Sequence[str]) -> list[list[int]] | None:
    """The parents of one prompt's questions by the official DSG loader's rule, or ``None`` when
    any cell fails ``int(piece.strip())`` (the loader then drops every dependency of the prompt).
    """
    try:
        return [[int(piece.strip()) for piece in cell.split(",")] for cell in cells]
    except ValueError:
        return None


def _dsg_question_type(row: Mapping[str, Any]) -> str | None:
    """The official question category: substring tests on the DSG tuple (``get_question_category``)."""
    tup = row.get("tuple") or ""
    if not tup:
        broad = (row.get("category_broad") or "").strip()
        return "attribute" if broad == "other" else (broad or None)
    if "entity" in tup:
        return "entity"
    if "attribute" in tup or "other" in tup:
        return "attribute"
    if "relation" in tup or "action" in tup:
        return "relation"
    if "global" in tup:
        return "global"
    return None


def _dsg_prompt(
    spec: SuiteSpec,
    files: Mapping[str, Path],
    item_id: str,
    text: str,
    source_ids: Mapping[str, str],
    category_map: Mapping[str, str],
    frame: Any,
    index: Any,
) -> Prompt:
    meta: dict[str, Any] = {}
    if source_ids:
        if item_id not in source_ids:
            raise DataInputError(
                f"item {item_id!r} has no TIFA source id in {files['likert']}",
                path=files["questions"],
                row=line_of(frame, index),
                field="item_id",
            )
        meta["source_id"] = source_ids[item_id]
        category = _source_of(source_ids[item_id])
    else:
        source = _source_of(item_id)
        if source not in category_map:
            raise DataInputError(
                f"unknown prompt source {source!r}: no category for it in suite '{spec.name}' "
                f"(known: {', '.join(sorted(category_map))})",
                path=files["questions"],
                row=line_of(frame, index),
                field="item_id",
            )
        category = category_map[source]
    return Prompt(item_id, text, category, MappingProxyType(meta))


@loaders.register("tifa_json")
def load_tifa_json(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """TIFA v1.0: a prompt list ``[{id, caption}]`` and, when present, the question list.

    A prompt's category is its source (the id without its number: coco, partiprompt, ...).
    """
    prompts = read_json_prompts(files["prompts"], "id", "caption", category_from_id=True)
    questions = ()
    if "questions" in files:
        questions = tuple(read_tifa_questions(files["questions"], {p.id for p in prompts}))
    return Loaded(prompts, questions)


def read_tifa_questions(path: Path, known_prompts: set[str] | None = None) -> list[Question]:
    """TIFA's question-answer list ``[{id, question, choices, answer, element_type}]``, in file order.

    A question's id is its text (as in TIFA's result files); a question repeated within a prompt is
    kept and counted again, as TIFA's scorer does, under the id ``<text> #<k>``.
    """
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise DataInputError("expected a non-empty JSON list of questions", path=path)
    seen: dict[tuple[str, str], int] = {}
    questions = []
    for i, row in enumerate(rows):
        where = f"[{i}]"
        if not isinstance(row, dict):
            raise DataInputError("expected an object", path=path, row=where)
        question = tifa_question_from(row, path, where)
        key = (question.prompt_id, question.id)
        if known_prompts is not None and key[0] not in known_prompts:
            raise DataInputError(f"unknown prompt id {key[0]!r}", path=path, row=where, field="id")
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            question = replace(question, id=f"{question.id} #{seen[key]}")
        questions.append(question)
    return questions


def tifa_question_from(row: Mapping[str, Any], path: Path, where: str) -> Question:
    """One TIFA question from a JSON object, validated."""
    prompt_id = require_str(row.get("id"), path, where, "id")
    text = require_str(row.get("question"), path, where, "question")
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise DataInputError(
            f"expected a list of at least 2 strings, got {choices!r}", path=path, row=where, field="choices"
        )
    answer = require_str(row.get("answer"), path, where, "answer")
    if answer not in choices:
        raise DataInputError(f"{answer!r} is not one of the choices {choices}", path=path, row=where, field="answer")
    element_type = row.get("element_type")
    return Question(
        prompt_id=prompt_id,
        id=text,
        text=text,
        answer=answer,
        choices=tuple(choices),
        element_type=str(element_type) if element_type else None,
    )


@loaders.register("table")
def load_table(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """A CSV/TSV prompt list: options ``text``, ``category``, ``sep``, ``id_prefix``, ``extra``."""
    opts = spec.options
    path = files["prompts"]
    text_col, cat_col = opts["text"], opts.get("category")
    frame = read_table(path, [c for c in (text_col, cat_col) if c], sep=opts.get("sep", ","))
    check_non_empty(frame, path, [text_col])
    prompts = []
    for n, (_, row) in enumerate(frame.iterrows()):
        meta = {k: row[k] for k in opts.get("extra", []) if k in row}
        category = row[cat_col].strip() if cat_col else None
        prompts.append(Prompt(f"{opts['id_prefix']}_{n}", row[text_col], category or None, MappingProxyType(meta)))
    return Loaded(tuple(prompts))


@loaders.register("lines")
def load_lines(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """One prompt per line, one file per category (the file's role is the category)."""
    prompts = []
    for role, path in files.items():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise DataInputError("the file is empty", path=path)
        prompts.extend(Prompt(f"{role}_{n:03d}", text, role) for n, text in enumerate(lines))
    return Loaded(tuple(prompts))


@loaders.register("jsonl")
def load_jsonl(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """JSON lines of objects: options ``text``, ``category``, ``id_prefix``; other fields go to meta."""
    opts = spec.options
    path = files["prompts"]
    prompts = []
    for n, row in enumerate(read_jsonl(path, allow_empty=False)):
        where = f"line {row.pop('_line')}"
        text = require_str(row.get(opts["text"]), path, where, opts["text"])
        category = row.get(opts["category"]) if opts.get("category") else None
        meta = {k: v for k, v in row.items() if k != opts["text"]}
        prompts.append(Prompt(f"{opts['id_prefix']}_{n}", text, category, MappingProxyType(meta)))
    return Loaded(tuple(prompts))


@loaders.register("json")
def load_json_prompts(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """A JSON list of objects with an id field and a text field (options ``id``, ``text``)."""
    return Loaded(read_json_prompts(files["prompts"], spec.options["id"], spec.options["text"]))


def read_json_prompts(
    path: Path, id_field: str, text_field: str, *, category_from_id: bool = False
) -> tuple[Prompt, ...]:
    """Prompts from a JSON list of objects; other fields of each object go to the prompt's meta."""
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise DataInputError(f"expected a non-empty JSON list of {{{id_field}, {text_field}}}", path=path)
    prompts: dict[str, Prompt] = {}
    for i, row in enumerate(rows):
        where = f"[{i}]"
        if not isinstance(row, dict):
            raise DataInputError("expected an object", path=path, row=where)
        prompt_id = require_str(row.get(id_field), path, where, id_field)
        if prompt_id in prompts:
            raise DataInputError(f"duplicate id {prompt_id!r}", path=path, row=where, field=id_field)
        text = require_str(row.get(text_field), path, where, text_field)
        meta = MappingProxyType({k: v for k, v in row.items() if k not in (id_field, text_field)})
        prompts[prompt_id] = Prompt(prompt_id, text, _source_of(prompt_id) if category_from_id else None, meta)
    return tuple(prompts.values())
