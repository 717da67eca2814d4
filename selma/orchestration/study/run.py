"""``run_study``: every stage of a study in order, then its comparison tables and record."""

from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from selma.orchestration.study.config import StudyConfig
from selma.orchestration.study.launch import execute
from selma.orchestration.study.layout import study_units
from selma.orchestration.study.selection import select_checkpoints
from selma.orchestration.study.units import (
    evaluate_cell,
    filter_unit,
    make_prompts,
    merge_unit,
    render_unit,
    requests_of,
    train_unit,
)
from selma.reporting.study_tables import comparison_rows, write_beside_paper, write_comparison


def run_study(
    study: StudyConfig,
    out: Path,
    locator: Any,
    *,
    progress: bool = True,
    launcher: str | None = None,
    launcher_params: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build what is missing, run every cell, and write ``comparison.md``/``comparison.csv``/``study.json``.
    ``force``: a stage output made with other settings is replaced (by default it is refused, naming them).

    With a ``launcher`` every stage's units (renders, LoRAs, merges, cells) are submitted as one job
    array; a stage starts when the previous one has finished.
    """
    from selma.harness.suites import load_suite
    from selma.results.store import make_provenance, now

    started = now()
    for suite in study.suites:  # missing suite data fails before any model work
        load_suite(suite, locator)
    units = study_units(study)
    params = launcher_params or {}
    folder = out / "jobs"
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    make_prompts(study, out, locator=locator, progress=progress, force=force)
    timings["datagen"] = round(time.perf_counter() - clock, 2)
    stages = (
        (
            "generate",
            [
                partial(render_unit, study, out, ref, skill, guidance, force=force)
                for ref, skill, guidance in units.renders
            ],
        ),
        (
            "verify",
            [partial(filter_unit, study, out, ref, skill, recipe, force=force) for ref, skill, recipe in units.filters],
        ),
        ("train", [partial(train_unit, study, out, variant, force=force) for variant in units.trainings]),
        ("merge", [partial(merge_unit, study, out, method, recipe, force=force) for method, recipe in units.merges]),
    )
    for stage, work in stages:
        clock = time.perf_counter()
        execute(work, launcher, folder, params, desc=f"study {stage}", progress=progress)
        timings[stage] = round(time.perf_counter() - clock, 2)
    requests = [dataclasses.replace(r, force=force) for r in requests_of(study)]
    clock = time.perf_counter()
    cells = [partial(evaluate_cell, study, out, locator, r) for r in requests]
    results = execute(cells, launcher, folder, params, desc="study evaluate", progress=progress)
    timings["evaluate"] = round(time.perf_counter() - clock, 2)
    rows = comparison_rows(requests, results)
    wide = write_comparison(out, study.name, study.variants, rows)
    record = {
        "study": study.model_dump(),
        "rows": rows,
        "timings_s": timings,
        "provenance": make_provenance(study.model_dump(), {}, seed=study.seed, started_at=started).model_dump(),
    }
    if study.selection is not None:
        clock = time.perf_counter()
        record["selection"] = select_checkpoints(study, out, locator, launcher, folder, params)
        timings["selection"] = round(time.perf_counter() - clock, 2)
    if study.paper:
        record["paper"] = write_beside_paper(out, study.name, study.paper, study.base_model, rows)
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return {"rows": rows, "table": wide}
