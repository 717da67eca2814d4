"""Running a stage's independent units: here, with a progress bar, or as a submitit job array."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def execute(
    units: list[Callable[[], Any]],
    launcher: str | None,
    folder: Path,
    params: dict[str, Any],
    *,
    desc: str | None = None,
    progress: bool = False,
) -> list[Any]:
    """Run independent units here (``launcher=None``, with a progress bar named ``desc``) or as a submitit
    job array.

    ``launcher`` is a submitit cluster: ``slurm`` (one Slurm array per stage), ``local`` (subprocesses
    on this machine) or ``debug`` (in this process). ``params`` go to ``update_parameters``.
    """
    if launcher is None or not units:
        from tqdm.auto import tqdm

        return [unit() for unit in tqdm(units, desc=desc, unit="unit", disable=not progress or not units)]
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(unit) for unit in units]
    return [job.result() for job in jobs]
