"""A package upgrade keeps every cached stage output: the version is provenance, not part of any key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DATA, WORLD_STUDY

from selma.cli import main

STUDY = {**WORLD_STUDY, "name": "upgrade", "limit": 4}


def _artifacts(root: Path) -> dict[Path, int]:
    """Every stage output file (images, weights, scores, markers) with its modification time."""
    kept = {".png", ".safetensors", ".jsonl", ".json"}
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.suffix in kept}


def _upgrade(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "selma" and hasattr(module, "__version__"):
            monkeypatch.setattr(module, "__version__", version)


def _run(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--suite", "shapes-mini", "--model", "shapes-base", "--limit", "4", "--data-dir", str(DATA),
            "--out", str(tmp_path / "runs"), *extra]  # fmt: skip


def test_an_upgrade_reuses_a_finished_run_and_force_rebuilds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_run(tmp_path)) == 0
    before = _artifacts(tmp_path / "runs")
    images = [p for p in before if p.suffix == ".png"]
    assert len(images) == 4
    capsys.readouterr()

    _upgrade(monkeypatch, "9.9.9")
    assert main(_run(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert "other settings" not in out + err
    assert _artifacts(tmp_path / "runs") == before  # nothing rewritten, nothing new

    # a folder whose marker records other settings is refused, naming --force, which replaces it
    (marker,) = (tmp_path / "runs").glob("*/.selma-stage.json")
    record = json.loads(marker.read_text())
    record["config"]["seed"], record["config_hash"] = 7, "0" * 64  # as if another seed had made it
    marker.write_text(json.dumps(record))
    assert main(_run(tmp_path)) == 2
    refused = capsys.readouterr().err
    assert "made with other settings (seed: 7 -> 0)" in refused and "pass --force" in refused
    assert main(_run(tmp_path, "--force")) == 0
    after = _artifacts(tmp_path / "runs")
    assert set(after) == set(before)
    assert all(after[p] != before[p] for p in images)  # re-rendered in place, under the same folder
    assert json.loads(marker.read_text())["config"]["seed"] == 0


@pytest.mark.slow
def test_an_upgrade_reuses_a_finished_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    command = ["study", str(config), "--out", str(tmp_path / "study"), "--data-dir", str(DATA)]
    assert main(command) == 0
    before = _artifacts(tmp_path / "study")
    assert any(p.suffix == ".safetensors" for p in before)
    _upgrade(monkeypatch, "9.9.9")
    assert main(command) == 0
    after = _artifacts(tmp_path / "study")
    # the study's own summary is rewritten each run; every stage under it is kept as it was
    rebuilt = {p for p in after if after[p] != before.get(p)} - {tmp_path / "study" / "study.json"}
    assert not rebuilt, sorted(str(p.relative_to(tmp_path)) for p in rebuilt)
