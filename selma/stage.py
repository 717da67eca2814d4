"""One mechanism for every stage that writes into an output: claim it before any work, refuse a changed one.

A stage (datagen, generate, train, merge, a study cell) first *claims* its output by writing a
small marker with the configuration that determines its bytes (``.selma-stage.json`` in an
output folder, ``<file>.selma-stage.json`` beside an output file). Then:

- no marker: a fresh output (a folder that exists and is not empty is refused: it is not ours);
- a marker with the same configuration: the stage resumes (or, when marked complete, is skipped);
- a marker with another configuration: refused with the differing settings named, unless
  ``force`` clears the output first.

So provenance can never describe settings that did not produce the bytes, and a resumed job only
continues an identical one. Settings that may change on resumption (for example how many steps to
train) are recorded but not compared.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from selma.errors import SelmaError
from selma.io import atomic_write_json, config_hash, describe_differences, write_folder

MARKER = ".selma-stage.json"
P = TypeVar("P")

PROVENANCE = frozenset({"version", "scorer_version"})
"""Settings a marker records but never compares: which selma-bench wrote the output, not what
determines its bytes. An upgrade keeps every cached output; a stage whose output does change says
so by raising its entry in :data:`FORMATS`."""

FORMATS: dict[str, int] = {}
"""Per stage kind, the version of its output's format (1 where absent): raised only when that stage,
given the same inputs and settings, would now write other bytes."""


def stage_key(kind: str, config: Mapping[str, Any], resumable: Iterable[str] = ()) -> str:
    """The one key of a stage output of ``kind`` configured by ``config``: the hash of its settings (those
    in ``resumable`` and :data:`PROVENANCE` left out) and of its stage's format version. Folder names and
    markers both use it, so the two can never disagree.
    """
    loose = set(resumable) | PROVENANCE
    settings = {k: v for k, v in config.items() if k not in loose}
    return config_hash({"stage": kind, "format": FORMATS.get(kind, 1), "settings": settings})


def marker_path(output: Path, folder: bool = True) -> Path:
    """Where the marker of an output folder (inside it) or output file (beside it) lives."""
    return output / MARKER if folder else output.with_name(output.name + MARKER)


@dataclass
class Claim:
    """A claimed output: its configuration, whether it was complete already, and how to finish it."""

    output: Path
    kind: str
    config: dict[str, Any]
    digest: str
    complete: bool
    folder: bool = True
    record: dict[str, Any] = field(default_factory=dict)

    def finish(self, record: Mapping[str, Any] | None = None) -> None:
        """Mark the output complete, with what the stage wants to remember (counts, timings)."""
        self.record = dict(record or {})
        self.complete = True
        _write(self)


def _write(claim: Claim) -> None:
    atomic_write_json(
        marker_path(claim.output, claim.folder),
        {
            "kind": claim.kind,
            "config_hash": claim.digest,
            "config": claim.config,
            "complete": claim.complete,
            "record": claim.record,
        },
    )


def read_marker(output: Path, folder: bool = True) -> dict[str, Any] | None:
    """The marker of ``output``, or ``None``; a damaged marker is an error naming it."""
    import json

    path = marker_path(output, folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "config_hash" not in data:
            raise ValueError("no config_hash")
    except (ValueError, OSError) as exc:
        raise SelmaError(f"{path}: a damaged stage marker ({exc}); remove it or pass --force") from None
    return data


def check(
    output: Path,
    kind: str,
    config: Mapping[str, Any],
    *,
    force: bool = False,
    resumable: Iterable[str] = (),
    folder: bool = True,
) -> Claim | None:
    """What :func:`claim` would find, without creating anything: the existing claim of the same
    configuration, or ``None`` for a fresh (or, with ``force``, replaceable) output; another
    configuration, or an output selma-bench did not write, is refused.
    """
    config = dict(config)
    loose = set(resumable) | PROVENANCE
    digest = stage_key(kind, config, resumable)
    if not folder and output.is_dir():
        raise SelmaError(f"{output} is a folder; the output is a file (for example {output / 'prompts.jsonl'})")
    previous = read_marker(output, folder)
    if previous is not None and previous["config_hash"] != digest:
        if force:
            return None
        changed = describe_differences(
            {k: v for k, v in previous.get("config", {}).items() if k not in loose},
            {k: v for k, v in config.items() if k not in loose},
        )
        raise SelmaError(
            f"{output} holds a {previous.get('kind', kind)} made with other settings ({changed}); "
            "choose another output or pass --force to replace it"
        )
    if previous is None:
        if folder and output.exists() and not output.is_dir():
            raise SelmaError(f"{output} is a file; the output must be a folder")
        foreign = output.is_dir() and any(p.name != MARKER for p in output.iterdir()) if folder else output.is_file()
        if foreign and not force:
            raise SelmaError(f"{output} exists and was not written by selma-bench; choose another output")
        return None
    complete, record = bool(previous.get("complete")), dict(previous.get("record") or {})
    return Claim(output, kind, config, digest, complete, folder, record)


def claim(
    output: Path,
    kind: str,
    config: Mapping[str, Any],
    *,
    force: bool = False,
    resumable: Iterable[str] = (),
    folder: bool = True,
) -> Claim:
    """Claim ``output`` (a folder, or a file when ``folder`` is false) for a stage of ``kind`` configured by
    ``config`` (see the module docstring).
    """
    existing = check(output, kind, config, force=force, resumable=resumable, folder=folder)
    if existing is not None:
        return existing
    if output.exists() or marker_path(output, folder).exists():
        _clear(output, folder)
    (output if folder else output.parent).mkdir(parents=True, exist_ok=True)
    fresh = Claim(output, kind, dict(config), stage_key(kind, config, resumable), False, folder)
    _write(fresh)
    return fresh


def run_stage(
    output: Path,
    kind: str,
    config: Mapping[str, Any],
    prepare: Callable[[], P],
    work: Callable[[Claim, P], Mapping[str, Any]],
    *,
    force: bool = False,
    is_done: Callable[[Claim], bool] = lambda _: True,
) -> dict[str, Any]:
    """A stage written in one go, as check -> prepare -> claim -> work -> finish: a complete output of the same
    configuration (and, by ``is_done``, with its files) returns its record untouched; otherwise ``prepare``
    (loading models, reading inputs: a failure there leaves nothing behind) runs before ``output`` is
    claimed, and ``work`` fills the claimed output and returns the record it is finished with.
    Stages that resume a partial output (datagen, generate, train) call :func:`check` and :func:`claim`
    themselves.
    """
    existing = check(output, kind, config, force=force)
    if existing is not None and existing.complete and is_done(existing):
        return existing.record
    prepared = prepare()
    claimed = claim(output, kind, config, force=force)
    record = dict(work(claimed, prepared))
    claimed.finish(record)
    return record


def complete_marker(
    folder: Path, kind: str, config: Mapping[str, Any], record: Mapping[str, Any] | None = None
) -> None:
    """Write a complete marker into a folder being built (for outputs written all at once)."""
    _write(Claim(folder, kind, dict(config), stage_key(kind, config), True, True, dict(record or {})))


def replace_output(out: Path, kind: str, config: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
    """Write a derived output folder (a report, a table) all at once: ``build`` fills a temporary folder that
    then replaces ``out``. An earlier output of selma-bench is replaced whatever its settings (it is
    derived from files that stay); a folder selma-bench did not write is refused, never deleted.
    """
    if out.exists() and not out.is_dir():
        raise SelmaError(f"{out} is a file; the output must be a folder")
    if out.is_dir() and read_marker(out) is None and any(out.iterdir()):
        raise SelmaError(f"{out} exists and was not written by selma-bench; choose another output")

    def marked(tmp: Path) -> None:
        build(tmp)
        complete_marker(tmp, kind, config)

    return write_folder(out, marked)


def ensure_output(out: Path, kind: str, config: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
    """A derived folder that is cheap to rebuild (rendered ground truth): kept when it was completed with
    ``config``, else rebuilt all at once by :func:`replace_output`.
    """
    marker = read_marker(out) if out.is_dir() else None
    if marker is not None and marker.get("complete") and marker["config_hash"] == stage_key(kind, config):
        return out
    return replace_output(out, kind, config, build)


def _clear(output: Path, folder: bool) -> None:
    marker_path(output, folder).unlink(missing_ok=True)
    if output.is_dir():
        shutil.rmtree(output)
    elif output.exists():
        output.unlink()


FAULT_ENV = "SELMA_BENCH_KILL_AT"


def fault_point(name: str) -> None:
    """A place where the fault-injection tests may kill the process: ``$SELMA_BENCH_KILL_AT=name:n`` sends
    SIGKILL to this process the n-th time ``name`` is passed. Costs one environment lookup otherwise.
    """
    import os

    wanted = os.environ.get(FAULT_ENV)
    if not wanted or not wanted.startswith(f"{name}:"):
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] >= int(wanted.rsplit(":", 1)[1]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_fault_counts: dict[str, int] = {}
