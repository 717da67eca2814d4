"""Where a model's weights are on this machine, checked before any work (no download, nothing loaded).

A reference is a local path, a hub repo id (``org/name``), or a file in a hub repo (``org/name/file.pt``).
A repo counts as present when the Hugging Face cache holds a snapshot of it; offline
(``--offline``, ``$SELMA_BENCH_OFFLINE`` or ``$HF_HUB_OFFLINE``) a reference found nowhere is an error
before anything is rendered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from selma.errors import SelmaError

OFFLINE_ENV = "SELMA_BENCH_OFFLINE"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def is_offline() -> bool:
    """Whether nothing may be downloaded."""
    return _truthy(os.environ.get(OFFLINE_ENV)) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def go_offline() -> None:
    """No download from here on, in this process and in the libraries (``--offline``)."""
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the variable then
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or "\\" in ref


def find_weights(ref: str) -> Path | None:
    """The local path of ``ref``: the path itself, or the hub cache's copy of the repo or file; ``None`` if absent."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if _looks_local(ref):
        return None
    parts = ref.split("/")
    try:
        if len(parts) <= 2:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(ref, local_files_only=True))
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache("/".join(parts[:2]), "/".join(parts[2:]))
        return Path(found) if isinstance(found, str) else None
    except Exception:  # not cached (the hub client raises several types)
        return None


def hub_cache() -> str:
    """The Hugging Face cache folder looked in."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def check_weights(needed: Mapping[str, str], *, how: str, strict: bool = True) -> dict[str, str | None]:
    """Where each needed model (role -> reference) is; offline and ``strict``, every absent one is one error
    naming them all, where they were looked for and ``how`` to supply them.
    """
    found = {role: find_weights(ref) for role, ref in needed.items()}
    missing = [f"{role} {needed[role]!r}" for role, path in found.items() if path is None]
    if missing and strict and is_offline():
        raise SelmaError(
            f"not on this machine: {'; '.join(missing)} (looked at the path and in the Hugging Face cache "
            f"{hub_cache()}); selma-bench is offline, so nothing is downloaded: {how}"
        )
    return {role: None if path is None else str(path) for role, path in found.items()}
