from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ANSWERS, DATA

from selma.cli import main
from selma.errors import SelmaError
from selma.harness.rescore import RescoreRequest, rescore
from selma.harness.suites import DataLocator
from selma.reporting.compare import compare_runs
from selma.reporting.report import write_report


@pytest.fixture
def two_runs(locator: DataLocator, tmp_path: Path) -> tuple[Path, Path]:
    a = rescore(
        RescoreRequest("dsg", ANSWERS / "mplug_dsg.csv", t2i_model="sd2dot1", label="mPLUG"),
        locator,
        out=tmp_path / "a",
    )
    b = rescore(
        RescoreRequest("dsg", ANSWERS / "pali17b_dsg.csv", t2i_model="sd2dot1", label="PaLI"),
        locator,
        out=tmp_path / "b",
    )
    return a.run_dir, b.run_dir


def test_compare_is_the_paired_difference(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    result = compare_runs(a, b, seed=0)
    d = result["difference"]
    assert d["delta"] == pytest.approx(result["b"]["score"] - result["a"]["score"])
    assert d["ci"][0] < d["delta"] < d["ci"][1] and d["n"] == 1060
    assert set(result["by_category"]) == {
        "tifa",
        "paragraph",
        "relation",
        "count",
        "real_user",
        "pose",
        "defying",
        "text",
    }
    assert sum(v["n"] for v in result["by_category"].values()) == 1060
    flipped = compare_runs(b, a, seed=0)["difference"]
    assert flipped["delta"] == pytest.approx(-d["delta"])


def test_compare_refuses_different_suites(two_runs: tuple[Path, Path], locator: DataLocator, tmp_path: Path) -> None:
    sample = DATA / "tifa" / "sample_evaluation_result.json"
    tifa = rescore(RescoreRequest("tifa", sample, matcher="normalized"), locator, out=tmp_path / "t")
    with pytest.raises(SelmaError, match="different suites"):
        compare_runs(two_runs[0], tifa.run_dir)


def test_report_writes_tables_and_figure(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    written = write_report(list(two_runs), tmp_path / "report")
    table = pd.read_csv(written["table.csv"])
    assert list(table["run"]) == ["mPLUG", "PaLI"]
    assert table.loc[1, "score"] == 80.5 and table.loc[1, "no_dependency"] == 82.9
    assert {"count", "relation", "ci_low", "ci_high"} <= set(table.columns)
    markdown = written["table.md"].read_text()
    assert "| PaLI" in markdown and "80.5" in markdown
    latex = written["table.tex"].read_text()
    assert "\\begin{table}" in latex and "\\toprule" in latex and "PaLI" in latex
    assert written["figure.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(written["report.json"].read_text())
    assert len(report["rows"]) == 2 and report["provenance"]["inputs"]


def test_cli_rescore_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["rescore", "--suite", "dsg", "--answers", str(ANSWERS / "pali17b_dsg.csv"), "--t2i-model", "sd2dot1"]
    assert main([*args, "--data-dir", str(DATA), "--json", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert round(summary["score"], 1) == 80.5 and summary["n_prompts"] == 1060
    assert main([*args[:-2], "--data-dir", str(DATA)]) == 2
    assert "choose one with --t2i-model" in capsys.readouterr().err
    assert main(["suites", "show", "nosuch"]) == 2
    assert "unknown suite 'nosuch'; choose one of: " in capsys.readouterr().err


def test_cli_compare_and_report(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(two_runs[0]), str(two_runs[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["difference"]["n"] == 1060
    assert main(["report", *map(str, two_runs), "--out", str(tmp_path / "rep")]) == 0
    assert "PaLI" in capsys.readouterr().out and (tmp_path / "rep" / "figure.png").is_file()


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed `selma-bench` command, as a user runs it."""
    exe = Path(sys.executable).with_name("selma-bench")
    env = {**os.environ, "SELMA_BENCH_DATA": str(DATA)}
    listing = subprocess.run([exe, "suites"], capture_output=True, text=True, env=env, check=True).stdout
    for name in [
        "dsg",
        "tifa160",
        "tifa",
        "partiprompts",
        "drawbench",
        "t2i-compbench",
        "geneval",
        "imagereward-bench",
    ]:
        assert f"\n{name} " in listing
    shown = subprocess.run(
        [exe, "suites", "show", "dsg", "--json"], capture_output=True, text=True, env=env, check=True
    )
    info = json.loads(shown.stdout)
    assert info["size"] == {"prompts": 1060, "questions": 8182}
    assert info["files"][0]["status"] == "verified" and info["categories"]["paragraph"] == 200
    run = subprocess.run(
        [
            *[exe, "rescore", "--suite", "tifa", "--answers", str(DATA / "tifa" / "sample_evaluation_result.json")],
            *["--matcher", "normalized"],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert "score 81.25" in run.stdout and "convention tifa" in run.stdout
    assert "wrote selma-runs/rescore-tifa-sample_evaluation_result-" in run.stderr


def test_report_beside_the_paper(locator: DataLocator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = rescore(
        RescoreRequest("dsg", ANSWERS / "pali17b_dsg.csv", t2i_model="sd2dot1", label="sd-v2/base"),
        locator,
        out=tmp_path / "base",
    ).run_dir
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--paper", "table1", "--model", "sd-v2"]) == 0
    rows = list(__import__("csv").DictReader((tmp_path / "rep" / "paper.csv").open()))
    assert rows[0]["variant"] == "base" and float(rows[0]["paper"]) == 70.3
    assert float(rows[0]["difference"]) == pytest.approx(float(rows[0]["score"]) - 70.3, abs=1e-3)
    assert "70.3" in capsys.readouterr().out
