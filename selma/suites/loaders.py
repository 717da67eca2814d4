"""Suite loaders, one per file format, selected by a suite's ``format`` and driven by its ``options``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from selma.errors import DataInputError
from selma.registry import Registry
from selma.suites.readers import (
    check_non_empty,
    check_unique,
    line_of,
    read_json,
    read_jsonl,
    read_table,
    require_str,
)
from selma.suites.spec import Prompt, Question, SuiteSpec

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

    Dependency cells are comma-separated question ids (0 = none). Ten rows of DSG-1K carry text
    after the ids (e.g. ``5, right``): the numeric parents are kept and a note names the items.
    (The official loader instead drops every dependency of such a prompt; both round to the same
    published 80.5.) Parents that are not questions of the prompt are skipped, as SELMA's scorer does.
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
    element_types: Mapping[str, str] = opts.get("element_types", {})

    prompts: dict[str, Prompt] = {}
    questions: list[Question] = []
    text_parents: list[str] = []
    dangling: list[str] = []
    ids_by_item = frame.groupby("item_id", sort=False)["proposition_id"].agg(lambda s: set(s.str.strip()))
    for index, row in frame.iterrows():
        item_id = row["item_id"].strip()
        if item_id not in prompts:
            meta: dict[str, Any] = {}
            if source_ids:
                if item_id not in source_ids:
                    raise DataInputError(
                        f"item {item_id!r} has no TIFA source id in {files['likert']}",
                        path=path,
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
                        path=path,
                        row=line_of(frame, index),
                        field="item_id",
                    )
                category = category_map[source]
            prompts[item_id] = Prompt(item_id, row["text"], category, MappingProxyType(meta))
        tokens = [t.strip() for t in row["dependency"].split(",") if t.strip()]
        numeric = [t for t in tokens if t.isdigit()]
        if len(numeric) != len(tokens):
            text_parents.append(item_id)
        known = ids_by_item[item_id]
        parents = []
        for token in numeric:
            if int(token) == 0:
                continue
            if str(int(token)) in known:
                parents.append(str(int(token)))
            else:
                dangling.append(item_id)
        broad = row["category_broad"].strip()
        questions.append(
            Question(
                prompt_id=item_id,
                id=str(int(row["proposition_id"])),
                text=row["question_natural_language"],
                parents=tuple(parents),
                element_type=element_types.get(broad, broad) or None,
            )
        )
    notes = []
    if text_parents:
        items = sorted(set(text_parents))
        notes.append(
            f"{len(text_parents)} rows of {path.name} carry non-numeric dependency text; kept their numeric "
            f"parents ({', '.join(items)})"
        )
    if dangling:
        items = sorted(set(dangling))
        notes.append(f"skipped parents that are not questions of the prompt ({', '.join(items)})")
    for note in notes:
        log.warning("suite %s: %s", spec.name, note)
    return Loaded(tuple(prompts.values()), tuple(questions), tuple(notes))


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
    """TIFA's question-answer list ``[{id, question, choices, answer, element_type}]``.

    A question's id is its text, unique within its prompt (as in TIFA's result files).
    """
    rows = read_json(path)
    if not isinstance(rows, list) or not rows:
        raise DataInputError("expected a non-empty JSON list of questions", path=path)
    seen: set[tuple[str, str]] = set()
    questions = []
    for i, row in enumerate(rows):
        where = f"[{i}]"
        if not isinstance(row, dict):
            raise DataInputError("expected an object", path=path, row=where)
        questions.append(tifa_question_from(row, path, where))
        key = (questions[-1].prompt_id, questions[-1].id)
        if key in seen:
            raise DataInputError(f"duplicate question {key[1]!r} for prompt {key[0]!r}", path=path, row=where)
        seen.add(key)
        if known_prompts is not None and key[0] not in known_prompts:
            raise DataInputError(f"unknown prompt id {key[0]!r}", path=path, row=where, field="id")
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
    for n, row in enumerate(read_jsonl(path)):
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


@loaders.register("shapes_world")
def load_shapes_world(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """The generated shapes-world suite: ``per_skill`` prompts of each skill from ``seed``, with questions."""
    from selma.world.suite import world_prompts

    return Loaded(*world_prompts(int(spec.options["per_skill"]), int(spec.options["seed"])))
