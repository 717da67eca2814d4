"""Score runs in lm-evaluation-harness's results layout, which its dashboards and tools read.

For each model label, ``<out>/<label>/results_<date>.json`` holds ``results`` (per task ``"<metric>,none"`` and
``"<metric>_stderr,none"``: the mean over prompts and its standard error), ``configs``, ``versions``,
``n-shot``, ``higher_is_better``, ``n-samples`` and ``config``, as lm-eval's ``EvaluationTracker`` writes
them; ``samples_<task>_<date>.jsonl`` holds one line per prompt (``doc_id``, ``doc``, the score). A task is
``<suite>_<metric>``; each category is a subtask ``<suite>_<metric>_<category>`` (lm-eval's group layout).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.harness.metrics import higher_is_better
from selma.io import atomic_write_text
from selma.results.schema import MetricSummary, ScoreSummary
from selma.results.store import read_records, read_summary

FILTER = "none"  # lm-eval's name for "no filter"


def _name(text: str) -> str:
    """lm-eval's sanitised model name: path separators and other odd characters become ``__``."""
    return re.sub(r"[^\w.-]+", "__", text)


def _task(summary: ScoreSummary | MetricSummary) -> str:
    return f"{summary.suite}_{summary.metric}"


def _results(summary: ScoreSummary | MetricSummary) -> dict[str, dict[str, Any]]:
    metric, task = summary.metric, _task(summary)
    stderr = summary.stdev / math.sqrt(summary.n_prompts) if summary.n_prompts > 1 else "N/A"
    results = {task: {"alias": task, f"{metric},{FILTER}": summary.score, f"{metric}_stderr,{FILTER}": stderr}}
    for category, score in sorted(summary.by_category.items()):
        results[f"{task}_{_name(category)}"] = {
            "alias": f" - {category}",
            f"{metric},{FILTER}": score,
            f"{metric}_stderr,{FILTER}": "N/A",
        }
    return results


def _samples(run: Path, summary: ScoreSummary | MetricSummary) -> list[dict[str, Any]]:
    return [
        {
            "doc_id": i,
            "doc": {"prompt_id": r["prompt_id"], "text": r.get("text"), "category": r.get("category")},
            "target": "",
            "arguments": [],
            "resps": [],
            "filtered_resps": [],
            "filter": FILTER,
            "metrics": [summary.metric],
            summary.metric: r["score"],
        }
        for i, r in enumerate(read_records(run, "prompts"))
    ]


def export_lm_eval(runs: list[Path], out: Path) -> list[Path]:
    """Write the runs (score/rescore run folders) in lm-eval's layout under ``out``; the results files written."""
    by_label: dict[str, list[tuple[Path, ScoreSummary | MetricSummary]]] = defaultdict(list)
    names: dict[str, str] = {}
    for run in runs:
        summary = read_summary(run)
        label = summary.label.split(":")[0]
        name = _name(label)
        if name.strip(".") == "":
            raise SelmaError(f"{run}: label {summary.label!r} makes no folder name; relabel the run")
        if names.setdefault(name, label) != label:
            raise SelmaError(f"labels {names[name]!r} and {label!r} share the folder name {name!r}; export them apart")
        by_label[label].append((run, summary))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds").replace(":", "-")
    written = []
    for label, items in by_label.items():
        tasks = [_task(s) for _, s in items]
        duplicated = {t for t in tasks if tasks.count(t) > 1}
        if duplicated:
            raise SelmaError(f"model {label!r}: two runs of task {sorted(duplicated)[0]!r}; export them separately")
        folder = out / _name(label)
        results: dict[str, Any] = {}
        for run, summary in items:
            results.update(_results(summary))
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _samples(run, summary))
            atomic_write_text(folder / f"samples_{_task(summary)}_{date}.jsonl", lines)
        first = items[0][1].provenance
        document = {
            "results": results,
            "group_subtasks": {_task(s): [t for t in results if t.startswith(f"{_task(s)}_")] for _, s in items},
            "configs": {
                _task(s): {
                    "task": _task(s),
                    "dataset_path": s.suite,
                    "output_type": "generate_until",
                    "metric_list": [
                        {"metric": s.metric, "aggregation": "mean", "higher_is_better": higher_is_better(s.metric)}
                    ],
                    "metadata": {"convention": s.convention, "selma_bench_run": str(run)},
                }
                for run, s in items
            },
            "versions": {_task(s): s.schema_version for _, s in items},
            "n-shot": {_task(s): 0 for _, s in items},
            "higher_is_better": {_task(s): {s.metric: higher_is_better(s.metric)} for _, s in items},
            "n-samples": {_task(s): {"original": s.n_prompts, "effective": s.n_prompts} for _, s in items},
            "config": {"model": "selma-bench", "model_args": label, "model_name": label},
            "model_name": label,
            "model_name_sanitized": _name(label),
            "git_hash": first.git_revision,
            "date": date,
            "selma_bench_version": first.package_version,
        }
        path = folder / f"results_{date}.json"
        atomic_write_text(path, json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        written.append(path)
    return written
