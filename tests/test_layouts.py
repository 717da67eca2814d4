"""Other tools' image layouts read by ``score``, and suites exported for other generators."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from PIL import Image

from selma.cli import main
from selma.harness.layouts import export_prompts, find_images, loose
from selma.harness.suites import DataLocator, Suite, load_suite


@pytest.fixture
def suite(locator: DataLocator) -> Suite:
    return load_suite("drawbench", locator)


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def test_an_imagefolder_with_metadata_csv(suite: Suite, tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    _png(tmp_path / "c.png")
    with (tmp_path / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        writer.writerows([["a.png", suite.prompts[0].text], ["b.png", suite.prompts[1].text], ["c.png", "no such"]])
    found = find_images(tmp_path, suite)
    assert found.layout == "metadata.csv" and found.unmatched == ["c.png"]
    assert found.by_prompt == {suite.prompts[0].id: [tmp_path / "a.png"], suite.prompts[1].id: [tmp_path / "b.png"]}


def test_geneval_output_layout_from_an_exported_suite(suite: Suite, tmp_path: Path) -> None:
    metadata = export_prompts(suite, tmp_path / "prompts.jsonl", "geneval")
    lines = metadata.read_text().splitlines()
    assert len(lines) == len(suite.prompts) and json.loads(lines[0])["prompt"] == suite.prompts[0].text
    out = tmp_path / "outputs"
    for index, line in enumerate(lines[:3]):  # what GenEval's diffusers_generate.py writes per prompt
        (out / f"{index:05d}" / "samples").mkdir(parents=True)
        (out / f"{index:05d}" / "metadata.jsonl").write_text(line + "\n")
        for k in range(2):
            _png(out / f"{index:05d}" / "samples" / f"{k:04d}.png", seed=k)
    found = find_images(out, suite)
    assert found.layout == "geneval"
    assert sorted(found.by_prompt) == sorted(p.id for p in suite.prompts[:3])
    assert all(len(paths) == 2 for paths in found.by_prompt.values())


def test_t2i_compbench_samples_named_by_prompt_text(suite: Suite, tmp_path: Path) -> None:
    prompt = suite.prompts[4]
    _png(tmp_path / "samples" / f"{prompt.text}_000000.png")
    _png(tmp_path / "samples" / f"{prompt.text}_000001.png")
    found = find_images(tmp_path, suite)
    assert found.by_prompt == {prompt.id: [tmp_path / "samples" / f"{prompt.text}_{k:06d}.png" for k in range(2)]}


def test_file_names_as_loosely_matched_prompt_text(suite: Suite, tmp_path: Path) -> None:
    prompt = next(p for p in suite.prompts if any(c in p.text for c in ".,'"))
    name = loose(prompt.text).replace(" ", "_")  # how many tools make a prompt a file name
    _png(tmp_path / f"{name}.png")
    assert find_images(tmp_path, suite).by_prompt == {prompt.id: [tmp_path / f"{name}.png"]}


def test_suites_export_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(DATA)]
    assert main(["suites", "export", "drawbench", "--format", "txt", "--out", str(tmp_path / "p.txt"), *data]) == 0
    assert "wrote 200 prompts of drawbench" in capsys.readouterr().out
    assert len((tmp_path / "p.txt").read_text().splitlines()) == 200
    assert main(["suites", "export", "drawbench", "--out", str(tmp_path / "p.jsonl"), "--json", *data]) == 0
    row = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt_id", "text", "category"}
    assert main(["suites", "export", "drawbench", *data]) == 2  # no --out
