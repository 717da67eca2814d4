"""Writing and reading run directories atomically, with provenance."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from selma import __version__
from selma.errors import DataInputError, SelmaError
from selma.io import config_hash
from selma.results.schema import MetricSummary, Provenance, ScoreSummary

SUMMARY = "summary.json"


def git_revision() -> str | None:
    """The git revision of the selma-bench source tree, ``+dirty`` when it has local changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_provenance(config: Mapping[str, Any], inputs: Mapping[str, str], *, seed: int, started_at: str) -> Provenance:
    """Provenance for a run configured by ``config`` that read ``inputs`` (path -> sha256)."""
    return Provenance(
        package_version=__version__,
        git_revision=git_revision(),
        command=list(sys.argv) if sys.argv and sys.argv[0] else None,
        config=dict(config),
        config_hash=config_hash(config),
        inputs=dict(inputs),
        seed=seed,
        started_at=started_at,
        finished_at=now(),
        python=sys.version.split()[0],
        platform=platform.platform(),
    )


def read_summary(run_dir: str | Path) -> ScoreSummary | MetricSummary:
    """Read and validate ``run_dir/summary.json`` (a QA-metric or a per-image-metric run)."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise SelmaError(f"{run_dir}: not a run directory (no {SUMMARY})")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataInputError(f"not valid JSON ({exc.msg}, line {exc.lineno}): a damaged run", path=path) from None
    if not isinstance(data, dict):
        raise DataInputError("expected a JSON object", path=path)
    model = MetricSummary if data.get("kind") == "metric" else ScoreSummary
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise DataInputError(f"{first['msg']} ({exc.error_count()} problem(s))", path=path, field=field) from None


def read_records(run_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    """The JSONL records of ``kind`` (e.g. ``prompts``) of a run."""
    summary = read_summary(run_dir)
    if kind not in summary.records:
        raise SelmaError(f"{run_dir}: run has no '{kind}' records")
    path = Path(run_dir) / summary.records[kind]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def existing_run(run_dir: Path, config: Mapping[str, Any]) -> ScoreSummary | MetricSummary | None:
    """The summary in ``run_dir`` if it was made with ``config``, else ``None`` (the stage mechanism of
    :mod:`selma.stage`: a run of another configuration is refused with the differing settings named, and
    nothing is overwritten unless the caller clears it, ``--force``).
    """
    from selma.stage import check

    done = check(run_dir, "run", config)
    if done is None or not done.complete or not (run_dir / SUMMARY).is_file():
        return None
    return read_summary(run_dir)


def write_run(run_dir: Path, summary: BaseModel, records: Mapping[str, Iterable[Mapping[str, Any]]]) -> Path:
    """Write ``records`` (file name -> rows, as JSONL), ``summary.json`` and the stage marker (complete, with
    the summary's configuration) into ``run_dir``, all at once.
    """
    from selma.stage import replace_output

    def build(tmp: Path) -> None:
        for name, rows in records.items():
            with (tmp / name).open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        (tmp / SUMMARY).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")

    provenance = getattr(summary, "provenance", None)
    return replace_output(run_dir, "run", provenance.config if provenance is not None else {}, build)
