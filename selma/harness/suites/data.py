"""Finding suite data files: a data directory, the download cache, or a one-time download."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from selma.errors import DataNotFoundError, SelmaError
from selma.harness.suites.spec import DataFile
from selma.io import default_cache_dir, sha256_file
from selma.weights import OFFLINE_ENV, is_offline

DATA_ENV = "SELMA_BENCH_DATA"
MIRROR_ENV = "SELMA_BENCH_MIRROR"


@dataclass(frozen=True)
class DataLocator:
    """Resolves a :class:`DataFile` to a local path.

    Order: an explicit per-role override, ``data_dir`` (``--data-dir``), ``$SELMA_BENCH_DATA``,
    the cache; then a download from the file's canonical URL (or ``$SELMA_BENCH_MIRROR/<path>``)
    into the cache, unless offline (``--offline``, ``$SELMA_BENCH_OFFLINE`` or ``$HF_HUB_OFFLINE``).
    Pinned files are checked against their sha256 wherever they were found.
    """

    data_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    offline: bool = False
    mirror: str | None = None
    overrides: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        data_dir: str | Path | None = None,
        *,
        offline: bool = False,
        overrides: Mapping[str, Path] | None = None,
    ) -> DataLocator:
        """Build a locator from CLI values and the environment variables named above."""
        offline = offline or is_offline()
        return cls(
            data_dir=Path(data_dir) if data_dir else None,
            cache_dir=default_cache_dir(),
            offline=offline,
            mirror=os.environ.get(MIRROR_ENV) or None,
            overrides=dict(overrides or {}),
        )

    def search_dirs(self) -> list[Path]:
        """Directories searched, in order."""
        dirs = []
        if self.data_dir is not None:
            dirs.append(self.data_dir)
        if os.environ.get(DATA_ENV):
            dirs.append(Path(os.environ[DATA_ENV]))
        dirs.append(self.cache_dir)
        return dirs

    def find(self, file: DataFile) -> Path | None:
        """The local path of ``file`` if it is on disk (no download), else ``None``."""
        if file.role in self.overrides:
            path = Path(self.overrides[file.role])
            if not path.is_file():
                raise DataNotFoundError(f"{path}: no such file (given for '{file.role}')")
            return path
        for directory in self.search_dirs():
            candidate = directory / file.path
            if candidate.is_file():
                return candidate
        return None

    def resolve(self, file: DataFile, suite: str) -> Path:
        """The local, checksum-verified path of ``file``, downloading it once if needed."""
        path = self.find(file)
        if path is None:
            path = self._download(file, suite)
        if file.sha256 and file.role not in self.overrides:
            actual = sha256_file(path)
            if actual != file.sha256:
                raise SelmaError(
                    f"{path}: sha256 {actual} differs from the pinned {file.sha256} of suite "
                    f"'{suite}' ({file.path}); the file is not the published version"
                )
        return path

    def url_for(self, file: DataFile) -> str | None:
        """Where ``file`` is downloaded from: the mirror if set, else its canonical URL."""
        if self.mirror:
            return f"{self.mirror.rstrip('/')}/{file.path}"
        return file.url

    def _download(self, file: DataFile, suite: str) -> Path:
        url = self.url_for(file)
        searched = ", ".join(str(d) for d in self.search_dirs())
        if url is None or self.offline:
            how = (
                f"or allow the one-time download from {url} into {self.cache_dir} "
                f"(selma-bench is offline: --offline, ${OFFLINE_ENV} or $HF_HUB_OFFLINE is set)"
                if url
                else "(it has no public download location)"
            )
            raise DataNotFoundError(
                f"suite '{suite}' needs {file.path}, which is not in {searched}. "
                f"Pass --data-dir DIR (or set ${DATA_ENV}=DIR) to a folder holding {file.path}, "
                f"or give the file itself with --file {file.role}=PATH, {how}."
            )
        target = self.cache_dir / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {file.path}", leave=False) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
            if file.sha256 and sha256_file(tmp) != file.sha256:
                raise SelmaError(f"download of {url} does not match the pinned sha256 {file.sha256}; nothing was kept")
            os.replace(tmp, target)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DataNotFoundError(
                f"suite '{suite}' needs {file.path}: not in {searched}, and downloading {url} failed ({exc}). "
                f"Pass --data-dir DIR (or set ${DATA_ENV}=DIR) to a folder holding {file.path}, "
                f"or give the file with --file {file.role}=PATH."
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        return target
