"""A new suite, metric (question-answer or per-image), convention and VQA backend come in through the registries
alone, and tables take each metric's display name and direction from its registry entry."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from selma.harness.metrics.base import MetricInfo, register_metric, register_qa_metric
from selma.harness.metrics.vqa import VQASpec, vqa_models
from selma.harness.scoring.conventions import QAConvention, conventions
from selma.harness.suites import DataLocator, add_suites_file, suite_registry
from selma.harness.suites.loaders import Loaded, loaders
from selma.harness.suites.spec import Prompt, Question, SuiteSpec


class AlwaysYes:
    """A toy VQA backend: says yes to everything (built by its registry entry's ``factory``)."""

    batch_size = 16
    checkpoint = "always-yes"

    def answer(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        image_shas: Sequence[str],
        choices: Sequence[Any] | None = None,
    ) -> list[str]:
        return ["yes"] * len(questions)


def load_toy(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """A toy format: {"prompts": [{id, text, category, questions: [[id, text, parents]]}]}."""
    data = json.loads(files["questions"].read_text())
    prompts = tuple(Prompt(p["id"], p["text"], p["category"]) for p in data["prompts"])
    questions = tuple(
        Question(p["id"], qid, text, parents=tuple(parents))
        for p in data["prompts"]
        for qid, text, parents in p["questions"]
    )
    return Loaded(prompts, questions)


class Darkness:
    """A toy per-image metric where lower is better: the mean pixel value (0-255) of the image."""

    info: MetricInfo

    def __init__(self) -> None:
        self.notes: list[str] = []

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        return [float(np.asarray(image).mean()) for image in images]


def _register() -> None:
    if "toy-questions" in loaders:
        return
    loaders.add("toy-questions", load_toy)
    info = MetricInfo(name="toy-brightness", display_name="Brightness", convention="mean pixel", higher_is_better=False)
    Darkness.info = info
    register_metric(info)(lambda checkpoints, device: Darkness())
    vqa_models.add("always-yes", VQASpec("always-yes", "custom", "", factory="test_registries:AlwaysYes"))
    register_qa_metric(MetricInfo(name="toyqa", display_name="Toy QA", convention="a toy", kind="qa"))
    conventions.add(
        "toyqa",
        QAConvention(
            name="toyqa",
            metric="toyqa",
            title="a toy convention",
            reference="tests/test_registries.py",
            matcher="exact",
            missing_prompts="zero",
            dependencies="raw",
            aggregate="macro",
            categories="prompt",
            vqa="always-yes",
            official=True,
        ),
    )


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path]:
    """A registered toy suite's data directory, and a folder of images for two of its three prompts."""
    _register()
    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    questions = {
        "prompts": [
            {"id": "toy_0", "text": "a red cat", "category": "animals", "questions": [["1", "Is there a cat?", []]]},
            {"id": "toy_1", "text": "a blue car", "category": "things", "questions": [["1", "A car?", []]]},
            {"id": "toy_2", "text": "a tree", "category": "things", "questions": [["1", "A tree?", []]]},
        ]
    }
    (data / "toy" / "questions.json").write_text(json.dumps(questions))
    suite_file = tmp_path / "suites.yaml"
    entry = {
        "title": "Toy",
        "description": "a toy suite",
        "source": "tests",
        "license": "none",
        "format": "toy-questions",
        "scoring": "toyqa",
        "files": {"questions": {"path": "toy/questions.json"}},
    }
    suite_file.write_text(yaml.safe_dump({"toy-suite": entry}))
    if "toy-suite" not in suite_registry():
        add_suites_file(suite_file)
    images = tmp_path / "images"
    images.mkdir()
    for pid in ("toy_0", "toy_1"):  # toy_2 has no image: scored 0 under the convention's "zero" rule
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(images / f"{pid}.png")
    return data, images


def test_a_toy_suite_metric_convention_and_vqa_backend_through_the_registries(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    data, images = toy
    from selma.harness.score import score_folder

    summary, _, _ = score_folder("toy-suite", images, "toyqa", DataLocator.from_env(data, offline=True))
    assert summary.convention == "toyqa" and summary.metric == "toyqa"
    assert summary.score == (100 + 100 + 0) / 3 and summary.by_category == {"animals": 100.0, "things": 50.0}
    assert any("answered by always-yes" in note for note in summary.notes)

    from selma.cli import main

    assert main(["score", "--suite", "toy-suite", "--images", str(images), "--metric", "toyqa"]) == 2  # no data dir
    assert (
        main(
            [
                *["score", "--suite", "toy-suite", "--images", str(images), "--metric", "toyqa"],
                *["--data-dir", str(data), "--out", str(tmp_path / "cli-run")],
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "cli-run" / "summary.json").read_text())["score"] == summary.score


def test_tables_read_direction_and_display_name_from_the_registry(toy: tuple[Path, Path], tmp_path: Path) -> None:
    from selma.harness.score import score_folder
    from selma.reporting.leaderboard import add_runs, read_board, render
    from selma.reporting.report import write_report

    data, images = toy
    locator = DataLocator.from_env(data, offline=True)
    bright = tmp_path / "bright"
    bright.mkdir()
    for pid, value in (("toy_0", 200), ("toy_1", 100)):
        Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(bright / f"{pid}.png")
    runs = [
        score_folder("toy-suite", folder, "toy-brightness", locator, label=label, out=tmp_path / label)[1]
        for folder, label in ((bright, "m-bright"), (images, "m-dark"))
    ]
    board = tmp_path / "board.csv"
    add_runs(board, runs)
    hardest = json.loads(read_board(board)["hardest_prompts"][0])
    assert [p["id"] for p in hardest] == ["toy_0", "toy_1"]  # lower is better: the brightest image is the worst
    markdown = render(board, tmp_path / "site")["markdown"].read_text()
    assert markdown.index("m-dark") < markdown.index("m-bright")  # best first by the metric's direction
    assert "Brightness ↓" in markdown
    table = write_report(runs, tmp_path / "report")["table.md"].read_text()
    assert table.startswith("toy-suite (Brightness ↓)")
