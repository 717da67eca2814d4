"""Neutral file helpers every stage uses: content hashes (remembered), atomic writes, JSONL, safe names.

Caches are keyed by what files *contain*, never by where they are: :func:`file_digest` hashes a
file's bytes once and remembers the digest by (path, size, modification time, inode) in a small
sqlite table, so a re-run re-reads only files that changed; :func:`content_identity` names a model
or checkpoint reference (a file, a directory of weights, or a hub id) by its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from selma.errors import DataInputError, SelmaError

HASHES = "file-hashes.sqlite"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")  # runs of characters unsafe in file names
_SAFE_ID = re.compile(r"[^\w.-]+")  # the same, keeping letters and digits of every script
_SKIPPED = re.compile(r"(^\.|\.part$|\.tmp$|\.lock$)")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same bytes for the same content, whatever the order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` (sets are sorted, so it never depends on hash seeds)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


class _HashMemo:
    """Digests of files, remembered by (path, size, mtime, inode) in ``<cache>/file-hashes.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self.db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=30)
                self.db.execute("CREATE TABLE IF NOT EXISTS hashes (key TEXT PRIMARY KEY, digest TEXT NOT NULL)")
            except (OSError, sqlite3.Error):
                self.db = None  # a read-only cache folder: hash every time
        return self.db

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"
        db = self._connect()
        if db is not None:
            row = db.execute("SELECT digest FROM hashes WHERE key = ?", (key,)).fetchone()
            if row:
                return str(row[0])
        value = sha256_file(path)
        if db is not None:
            try:
                with db:
                    db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?)", (key, value))
            except sqlite3.Error:
                pass
        return value


_memos: dict[Path, _HashMemo] = {}


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes, computed once per (path, size, mtime, inode)."""
    location = default_cache_dir() / HASHES
    memo = _memos.setdefault(location, _HashMemo(location))
    return memo.digest(Path(path))


def tree_digest(folder: str | Path) -> str:
    """A digest of every file under ``folder`` (relative paths and contents; dot files and partial files skipped)."""
    root = Path(folder)
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(_SKIPPED.search(part) for part in relative.parts):
            continue
        entries.append([relative.as_posix(), file_digest(path)])
    return config_hash({"files": entries})


def content_identity(ref: str | Path) -> str:
    """What a model or checkpoint reference *is*: the digest of a local file or directory, else the reference
    itself (a hub id, which names one published thing).
    """
    path = Path(ref)
    if path.is_file():
        return f"sha256:{file_digest(path)}"
    if path.is_dir():
        return f"tree:{tree_digest(path)[:32]}"
    return str(ref)


def safe_id(value: str) -> str:
    """``value`` with every run of characters unsafe in file names replaced by ``-`` (letters and digits of
    any script are kept: ``é`` and ``ü`` stay distinct ids).
    """
    return _SAFE_ID.sub("-", value).strip("-").lstrip(".") or "prompt"  # never ".", ".." or a hidden file


def check_safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name (no separators, not ``.``/``..``), else an error naming ``what``."""
    if not name or name in (".", "..") or _SAFE.search(name) or name.startswith("."):
        raise SelmaError(
            f"{what} {name!r} is not a safe name: use letters, digits, '.', '_' and '-' (not starting with '.')"
        )
    return name


def inside(base: Path, relative: str, *, path: Path | None = None, row: str | None = None, field: str = "") -> Path:
    """``base / relative`` if it stays inside ``base``; otherwise an error naming the file, row and field."""
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()):
        raise DataInputError(f"{relative!r} points outside {base}", path=path, row=row, field=field or None)
    return target


@contextlib.contextmanager
def writing_to(folder: Path) -> Iterator[None]:
    """Name ``folder`` in an ``OSError`` raised without a file name (a full disk while a library writes)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(folder)) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_folder(out: Path, build: Callable[[Path], None]) -> Path:
    """Let ``build`` fill a temporary sibling folder, then put it at ``out`` in one step (replacing what was
    there), so a failure leaves neither a partial folder nor a damaged earlier one.
    """
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    make_readable(tmp)
    try:
        build(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def atomic_write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON with sorted keys, atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n")


CACHE_ENV = "SELMA_BENCH_CACHE"


def default_cache_dir() -> Path:
    """``$SELMA_BENCH_CACHE``, else ``$XDG_CACHE_HOME/selma-bench``, else ``~/.cache/selma-bench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "selma-bench"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def make_readable(folder: Path) -> None:
    """Give a folder made by ``tempfile.mkdtemp`` (0700) the permissions the user's umask asks for."""
    os.chmod(folder, 0o777 & ~_umask())


def read_jsonl(
    path: Path, required: Mapping[str, type | tuple[type, ...]] | None = None, *, allow_empty: bool = True
) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, each with its line number as ``_line``; blank lines are skipped, and a
    bad line is an error naming the file, line and field.

    ``required`` maps field names to the types their values must have; without ``allow_empty`` a file
    with no object is an error.
    """
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataInputError("not UTF-8 text", path=path) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataInputError(f"not valid JSON ({exc.msg})", path=path, row=f"line {number}") from None
        if not isinstance(row, dict):
            raise DataInputError("expected a JSON object", path=path, row=f"line {number}")
        for name, kind in (required or {}).items():
            if name not in row:
                raise DataInputError("missing", path=path, row=f"line {number}", field=name)
            if not isinstance(row[name], kind) or (isinstance(row[name], bool) and kind is int):
                raise DataInputError(
                    f"expected {_type_name(kind)}, got {row[name]!r}", path=path, row=f"line {number}", field=name
                )
        row["_line"] = number
        rows.append(row)
    if not rows and not allow_empty:
        raise DataInputError("the file is empty", path=path)
    return rows


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "float": "a number"}.get(k.__name__, k.__name__) for k in kinds
    )


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the settings that differ between two configurations."""
    changed = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed.extend(differences(a, b, f"{name}."))
        elif canonical_json(a) != canonical_json(b):
            changed.append(name)
    return changed


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> str:
    """A short text naming the differing settings, with their old and new values."""
    changed = differences(old, new)
    parts = []
    for name in changed[:limit]:
        a, b = _lookup(old, name), _lookup(new, name)
        parts.append(f"{name}: {_short(a)} -> {_short(b)}")
    more = f" (and {len(changed) - limit} more)" if len(changed) > limit else ""
    return ", ".join(parts) + more


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _short(value: Any) -> str:
    text = canonical_json(value)
    return text if len(text) <= 40 else text[:37] + "..."


def save_state(folder: Path, state: Mapping[str, Any]) -> None:
    """Save a nested training state (state dicts of tensors, numbers, lists) without pickle: its tensors in
    ``tensors.safetensors``, its structure in ``structure.json``, both replaced at once.
    """
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = _flatten(state, "s", tensors)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "tensors.safetensors"))
    (tmp / "structure.json").write_text(json.dumps(structure), encoding="utf-8")
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        folder.replace(old)
    tmp.replace(folder)
    if old.exists():
        import shutil

        shutil.rmtree(old)


def load_state(folder: Path) -> dict[str, Any]:
    """A state saved by :func:`save_state` (no code is executed: safetensors and JSON only)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(folder / "tensors.safetensors"))
        structure = json.loads((folder / "structure.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SelmaError(f"{folder}: not a readable training state ({str(exc)[:160]})") from None
    from selma.finite import refuse_non_finite

    refuse_non_finite(tensors.items(), folder / "tensors.safetensors")
    return _unflatten(structure, tensors)


def _flatten(value: Any, key: str, tensors: dict[str, Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(value, Mapping):
        return {"dict": [[k, _flatten(v, f"{key}.{i}", tensors)] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise SelmaError(f"cannot save a {type(value).__name__} in a training state")


def _unflatten(node: Mapping[str, Any], tensors: Mapping[str, Any]) -> Any:
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {k: _unflatten(v, tensors) for k, v in node["dict"]}
    if "list" in node:
        return [_unflatten(v, tensors) for v in node["list"]]
    if "tuple" in node:
        return tuple(_unflatten(v, tensors) for v in node["tuple"])
    return node["value"]


def canonical_safetensors(path: Path) -> None:
    """Rewrite a safetensors file's header with sorted keys: the library writes its metadata in hash-map
    order, which differs between processes, so identical tensors would otherwise give different bytes.
    """
    import struct

    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    os.replace(tmp, path)
