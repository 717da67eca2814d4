"""A full disk and a read-only file system, real ones (tmpfs mounts): one line naming the folder and the
cause, exit 2, and no temporary files left behind.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA

from selma.cli import main


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path/fs`` (mounting needs root: skipped where it cannot be had)."""
    point = tmp_path / "fs"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _run(out: Path, limit: int) -> list[str]:
    return ["run", "--suite", "shapes-mini", "--model", "shapes-base", "--limit", str(limit), "--metric", "dsg",
            "--data-dir", str(DATA), "--out", str(out), "-q"]  # fmt: skip


def test_a_full_disk_during_generation_names_the_folder_and_leaves_no_temporaries(
    mount: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # fill the disk, then free 24 KiB: the stage markers fit, the 40 images (a 4 KiB page each) do not
    filler = mount / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1024"], capture_output=True)
    os.truncate(filler, filler.stat().st_size - 24 * 1024)
    assert main(_run(mount / "runs", 40)) == 2
    err = capsys.readouterr().err.strip()
    assert "no space left on the device" in err and str(mount / "runs") in err and len(err.splitlines()) == 1
    left = [p.name for p in (mount / "runs").rglob("*") if p.name.endswith((".part", ".tmp")) or ".tmp-" in p.name]
    assert not left

    # freed, the same command finishes what it started
    (mount / "filler").unlink()
    assert main(_run(mount / "runs", 40)) == 0
    assert len(list((mount / "runs").rglob("*.png"))) == 40


def test_a_read_only_output_folder_is_named(mount: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    assert main(_run(mount / "runs", 2)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"selma-bench: error: {mount / 'runs'}: a read-only file system (choose another --out)"
