from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from PIL import Image

from selma.errors import DataInputError, SelmaError
from selma.harness.layouts import find_images
from selma.harness.metrics.tiny import TINY_OPEN_CLIP
from selma.harness.score import score_folder
from selma.harness.suites import DataLocator, load_suite
from selma.results.store import read_records


def _write(folder: Path, name: str, mode: str = "RGB", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 255, (36, 30, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")
    elif mode == "I;16":
        image = Image.fromarray(array[..., 0].astype(np.uint16) * 257)
    path = folder / name
    image.save(path)
    return path


@pytest.fixture
def drawbench_images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for k, mode in enumerate(["RGB", "L", "RGBA", "I;16"]):
        _write(folder, f"drawbench_{k}.png", mode, seed=k)
    _write(folder, "drawbench_0_01.png", seed=9)  # a second image of prompt 0
    _write(folder, "stray.png")
    return folder


def test_find_images_by_file_name(drawbench_images: Path, locator: DataLocator) -> None:
    found = find_images(drawbench_images, load_suite("drawbench", locator))
    assert sorted(found.by_prompt) == ["drawbench_0", "drawbench_1", "drawbench_2", "drawbench_3"]
    assert len(found.by_prompt["drawbench_0"]) == 2 and found.unmatched == ["stray.png"]


def test_pickscore_on_a_folder(drawbench_images: Path, tiny_clip: Path, locator: DataLocator, tmp_path: Path) -> None:
    checkpoints = {"model": str(tiny_clip), "processor": str(tiny_clip)}
    summary, run, cached = score_folder(
        "drawbench", drawbench_images, "pickscore", locator, checkpoints=checkpoints, out=tmp_path / "run"
    )
    assert not cached and summary.kind == "metric" and summary.n_prompts == 4 and summary.n_images == 5
    images = read_records(run, "images")
    prompts = read_records(run, "prompts")
    first = [r["score"] for r in images if r["prompt_id"] == "drawbench_0"]
    assert prompts[0]["score"] == pytest.approx(sum(first) / 2)
    assert summary.score == pytest.approx(np.mean([p["score"] for p in prompts]))
    assert summary.by_category == {"Colors": pytest.approx(summary.score)}  # drawbench 0-3 are all "Colors"
    assert any("stray.png" in note for note in summary.notes)
    assert any(note.startswith("196 of 200 prompts of suite 'drawbench' have no image") for note in summary.notes)
    again = score_folder(
        "drawbench", drawbench_images, "pickscore", locator, checkpoints=checkpoints, out=tmp_path / "run"
    )
    assert again[2] is True


def test_hps_on_a_folder_from_the_cli(
    drawbench_images: Path,
    tiny_clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from test_clip_metrics import _to_open_clip
    from transformers import CLIPModel

    from selma.cli import main

    torch.save(_to_open_clip(CLIPModel.from_pretrained(tiny_clip)), tmp_path / "hps.pt")
    monkeypatch.setattr("selma.harness.metrics.open_clip_convert.VIT_H_14", TINY_OPEN_CLIP)
    code = main(
        [
            "score",
            "--suite",
            "drawbench",
            "--images",
            str(drawbench_images),
            "--metric",
            "hpsv2",
            "--checkpoint",
            f"checkpoint={tmp_path / 'hps.pt'}",
            "--checkpoint",
            f"processor={tiny_clip}",
            "--data-dir",
            str(DATA),
            "--out",
            str(tmp_path / "hps"),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)[0]
    assert summary["metric"] == "hpsv2" and -100 <= summary["score"] <= 100
    assert summary["checkpoints"]["checkpoint"] == str(tmp_path / "hps.pt")


def test_corrupt_image_is_an_error(
    drawbench_images: Path, tiny_clip: Path, locator: DataLocator, tmp_path: Path
) -> None:
    (drawbench_images / "drawbench_1.png").write_bytes((drawbench_images / "drawbench_1.png").read_bytes()[:100])
    with pytest.raises(DataInputError, match="drawbench_1.png: not a readable image"):
        score_folder(
            "drawbench",
            drawbench_images,
            "pickscore",
            locator,
            checkpoints={"model": str(tiny_clip), "processor": str(tiny_clip)},
            out=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()


def test_dsg_from_images_with_a_vqa_model(tiny_blip: Path, locator: DataLocator, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for k in range(3):
        _write(folder, f"tifa160_{k}.png", seed=k)
    summary, run, _ = score_folder(
        "tifa160",
        folder,
        "dsg",
        locator,
        limit=3,
        out=tmp_path / "run",
        checkpoints={"vqa": "blip", "model": str(tiny_blip)},
    )
    questions = read_records(run, "questions")
    suite = load_suite("tifa160", locator)
    expected = [q for q in suite.questions if q.prompt_id in {"tifa160_0", "tifa160_1", "tifa160_2"}]
    assert len(questions) == len(expected) and summary.n_prompts == 3 and summary.kind == "score"
    for record in questions:  # the shared scorer's rules: 1 iff the answer is exactly "yes", then dependencies
        assert record["raw"] == int(record["answer"] == "yes")
    assert summary.score == pytest.approx(np.mean([p["score"] for p in read_records(run, "prompts")]))


def test_score_errors(drawbench_images: Path, locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match="unknown metric 'clipscore'"):
        score_folder("drawbench", drawbench_images, "clipscore", locator)
    with pytest.raises(SelmaError, match="needs a suite with dsg questions"):
        score_folder("drawbench", drawbench_images, "dsg", locator)
    with pytest.raises(SelmaError, match="no image matches a prompt of suite 'dsg'"):
        score_folder("dsg", drawbench_images, "dsg", locator)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["pickscore", "dsg"])
def test_two_processes_score_like_one(tiny_clip: Path, tiny_blip: Path, tmp_path: Path, metric: str) -> None:
    import os
    import subprocess
    import sys

    folder = tmp_path / "images"
    suite = "drawbench" if metric == "pickscore" else "tifa160"
    for k in range(6):
        _write(folder, f"{suite}_{k}.png", seed=k)
    checkpoints = (
        [f"model={tiny_clip}", f"processor={tiny_clip}"]
        if metric == "pickscore"
        else ["vqa=blip", f"model={tiny_blip}"]
    )
    args = [
        "score",
        "--suite",
        suite,
        "--images",
        str(folder),
        "--metric",
        metric,
        "--limit",
        "6",
        "--data-dir",
        str(DATA),
        *[x for c in checkpoints for x in ("--checkpoint", c)],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SELMA_BENCH_CACHE": str(tmp_path / "cache")}
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "selma-bench", *args, "--out", str(tmp_path / "one")], env=env, check=True, capture_output=True
    )
    subprocess.run(
        [bin_dir / "torchrun", "--nproc_per_node", "2", "-m", "selma.cli", *args, "--out", str(tmp_path / "two")],
        env={**env, "SELMA_BENCH_CACHE": str(tmp_path / "cache2")},
        check=True,
        capture_output=True,
    )
    kinds = ["prompts", "images"] if metric == "pickscore" else ["prompts", "questions"]
    for kind in kinds:
        assert read_records(tmp_path / "one", kind) == read_records(tmp_path / "two", kind)
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert one["score"] == two["score"] and one["ci"] == two["ci"]
    assert not list(tmp_path.glob(".two.shards"))


def test_export_in_lm_eval_layout(
    drawbench_images: Path, tiny_clip: Path, locator: DataLocator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selma.cli import main

    checkpoints = {"model": str(tiny_clip), "processor": str(tiny_clip)}
    summary, run, _ = score_folder(
        "drawbench", drawbench_images, "pickscore", locator, checkpoints=checkpoints, out=tmp_path / "run"
    )
    assert main(["export", "--format", "lm-eval", str(run), "--out", str(tmp_path / "lm-eval"), "--json"]) == 0
    (results_path,) = (Path(p) for p in json.loads(capsys.readouterr().out)["results"])
    assert results_path.parent == tmp_path / "lm-eval" / "images" and results_path.name.startswith("results_")
    results = json.loads(results_path.read_text())
    task = results["results"]["drawbench_pickscore"]
    assert task["pickscore,none"] == pytest.approx(summary.score)
    assert task["pickscore_stderr,none"] == pytest.approx(summary.stdev / 2)  # 4 prompts
    assert results["results"]["drawbench_pickscore_Colors"]["alias"] == " - Colors"
    assert results["higher_is_better"] == {"drawbench_pickscore": {"pickscore": True}}
    assert results["n-samples"]["drawbench_pickscore"]["effective"] == 4
    (samples,) = results_path.parent.glob("samples_drawbench_pickscore_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [r["doc"]["prompt_id"] for r in rows] == [f"drawbench_{k}" for k in range(4)]
    assert [r["pickscore"] for r in rows] == [r["score"] for r in read_records(run, "prompts")]


def test_a_report_shows_the_same_prompts_of_each_run_as_a_grid(
    drawbench_images: Path, tiny_clip: Path, locator: DataLocator, tmp_path: Path
) -> None:
    from selma.reporting.report import GRID_PROMPTS, write_report

    checkpoints = {"model": str(tiny_clip), "processor": str(tiny_clip)}
    runs = [
        score_folder(
            "drawbench",
            drawbench_images,
            "pickscore",
            locator,
            checkpoints=checkpoints,
            label=f"v{k}",
            seed=k,
            out=tmp_path / f"run{k}",
        )[1]
        for k in range(2)
    ]
    written = write_report(runs, tmp_path / "report")
    with Image.open(written["grid.png"]) as grid:  # 2 rows of 128 px under the captions, 4 prompts of 128 px
        assert grid.width == 190 + 128 * min(4, GRID_PROMPTS) and grid.height > 2 * 128


def test_the_leaderboard_page_shows_the_hardest_prompts_as_images(
    drawbench_images: Path, tiny_clip: Path, locator: DataLocator, tmp_path: Path
) -> None:
    from selma.reporting.leaderboard import add_runs, render

    checkpoints = {"model": str(tiny_clip), "processor": str(tiny_clip)}
    _, run, _ = score_folder(
        "drawbench",
        drawbench_images,
        "pickscore",
        locator,
        checkpoints=checkpoints,
        label="tiny/base",
        out=tmp_path / "run",
    )
    add_runs(tmp_path / "board.csv", [run])
    html = render(tmp_path / "board.csv", tmp_path / "site")["html"].read_text()
    thumbs = re.findall(r'<img class="thumb" alt="([^"]*)" src="data:image/png;base64,', html)
    assert len(thumbs) == 3 and all(thumbs)  # the 3 hardest prompts, each with its image and its text
