"""Sharing work between processes (``accelerate launch`` on GPUs, ``torchrun`` on CPUs) through files.

Work is cut into fixed chunks; each process takes whole chunks (``split_between_processes``) and
writes its results (numbers and strings) to a JSON scratch file; every process then reads all of
them back in order. A
chunk is computed the same way whatever the number of processes, so sharded results equal
single-process ones. No collective communication is needed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def process_state() -> Any:
    """Accelerate's ``PartialState`` (on the CPU when there is no GPU, so torchrun ranks are seen)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def shard_map(items: Sequence[T], chunk: int, fn: Callable[[Sequence[T]], list[R]], scratch: Path) -> list[R]:
    """``fn`` over fixed chunks of ``items``, shared between processes; every process gets all results."""
    state = process_state()
    chunks = [items[start : start + chunk] for start in range(0, len(items), chunk)]
    if state.num_processes == 1:
        return [result for piece in chunks for result in fn(piece)]
    with state.split_between_processes(list(range(len(chunks)))) as mine:
        done = {index: fn(chunks[index]) for index in mine}
    scratch.mkdir(parents=True, exist_ok=True)
    part = scratch / f"rank{state.process_index}.json"  # JSON, never pickle: the folder may be shared
    part.with_suffix(".tmp").write_text(json.dumps({str(k): v for k, v in done.items()}), encoding="utf-8")
    part.with_suffix(".tmp").replace(part)
    state.wait_for_everyone()
    merged: dict[int, list[R]] = {}
    for rank in range(state.num_processes):
        text = (scratch / f"rank{rank}.json").read_text(encoding="utf-8")
        merged.update({int(k): v for k, v in json.loads(text).items()})
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(scratch, ignore_errors=True)
    return [result for index in range(len(chunks)) for result in merged[index]]
