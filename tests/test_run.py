from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import DATA

from selma.cli import main


def test_run_generates_scores_and_reuses(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run",
        "--suite",
        "drawbench",
        "--model",
        str(tiny_models["tiny-sd1"]),
        "--metric",
        "pickscore",
        "--checkpoint",
        f"model={tiny_clip}",
        "--checkpoint",
        f"processor={tiny_clip}",
        "--limit",
        "3",
        "--images-per-prompt",
        "2",
        "--data-dir",
        str(DATA),
        "--out",
        str(tmp_path / "runs"),
    ]
    assert main([*args, "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["n_prompts"] == 3 and planned["n_images"] == 6 and planned["images_cached"] == 0
    assert planned["metrics"]["pickscore"] == {"model_calls": 6, "cached": False}
    assert main([*args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["generated"] == {"rendered": 6, "skipped": 0, "total": 6}
    summary = first["summaries"][0]
    assert summary["metric"] == "pickscore" and summary["n_images"] == 6 and summary["n_prompts"] == 3
    assert Path(first["dir"], "table.md").read_text().startswith("### PickScore ↑")
    assert main([*args, "--dry-run", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["images_cached"] == 6 and again["metrics"]["pickscore"] == {"model_calls": 0, "cached": True}
    assert main([*args, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["generated"]["rendered"] == 0 and second["summaries"] == first["summaries"]


def test_run_dsg_with_a_vqa_model(
    tiny_models: dict[str, Path], tiny_blip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--suite",
            "tifa160",
            "--model",
            str(tiny_models["tiny-sd1"]),
            "--vqa",
            "blip",
            "--vqa-model",
            str(tiny_blip),
            "--limit",
            "2",
            "--data-dir",
            str(DATA),
            "--out",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "images: 2 rendered, 0 reused" in out and "### DSG ↑" in out


def test_run_needs_a_metric_for_suites_without_questions(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--suite",
            "drawbench",
            "--model",
            str(tiny_models["tiny-sd1"]),
            "--data-dir",
            str(DATA),
            "--dry-run",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2 and "has no default metric" in capsys.readouterr().err


def test_an_offline_run_checks_every_model_before_rendering(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--suite", "dsg", "--model", str(tiny_models["tiny-sd1"]), "--limit", "1", "--offline"]
    args += ["--data-dir", str(DATA), "--out", str(tmp_path / "runs")]
    assert main([*args, "--dry-run"]) == 0
    assert "dsg VQA model (instructblip-vicuna-7b): not on this machine" in capsys.readouterr().out
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not on this machine: dsg VQA model (instructblip-vicuna-7b) 'Salesforce/instructblip-vicuna-7b'" in err
    assert "--vqa-model PATH" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing rendered


def test_the_readme_offline_dsg_run_on_tiny_models(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blip = tmp_path / "tiny-blip"
    assert main(["models", "tiny-scorer", "blip-vqa", "--out", str(blip)]) == 0
    assert "use it as BLIP VQA: --vqa blip --vqa-model DIR" in capsys.readouterr().out
    assert main(["models", "tiny-scorer", "blip-vqa", "--out", str(blip)]) == 2  # never over a folder
    run = ["run", "--suite", "dsg", "--model", str(tiny_models["tiny-sd1"]), "--limit", "1", "--offline"]
    run += ["--vqa", "blip", "--vqa-model", str(blip), "--data-dir", str(DATA), "--out", str(tmp_path / "runs")]
    assert main([*run, "--dry-run"]) == 0
    assert f"dsg VQA model (blip): {blip}" in capsys.readouterr().out
    assert main(run) == 0
    assert "### DSG ↑" in capsys.readouterr().out


def test_the_generation_dtype_is_part_of_the_images_key(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--suite", "drawbench", "--model", str(tiny_models["tiny-sd1"]), "--metric", "pickscore"]
    args += ["--checkpoint", f"model={tiny_clip}", "--checkpoint", f"processor={tiny_clip}", "--limit", "1"]
    args += ["--data-dir", str(DATA), "--out", str(tmp_path), "--dry-run", "--json"]
    folders = []
    for dtype in ("float32", "bfloat16"):
        assert main([*args, "--dtype", dtype]) == 0
        folders.append(json.loads(capsys.readouterr().out)["images_dir"])
    assert folders[0] != folders[1]


def test_quiet_silences_every_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--suite", "shapes-mini", "--model", "shapes-base", "--limit", "2", "--data-dir", str(DATA)]
    hub_before = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    assert main(["-q", *args, "--out", str(tmp_path / "quiet"), "--seed", "1"]) == 0
    assert capsys.readouterr().err == ""
    # a later call without -q in the same process (the Python API, a notebook) shows its bars again
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert "generate" in capsys.readouterr().err
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == hub_before
    assert main(["-q", *args, "--out", str(tmp_path / "quiet"), "--seed", "1"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["-v", *args, "--out", str(tmp_path / "verbose"), "--seed", "2"]) == 0
    assert "generate" in capsys.readouterr().err
