from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ANSWERS
from PIL import Image

from selma.cli import main
from selma.harness.rescore import RescoreRequest, rescore
from selma.harness.suites import DataLocator
from selma.reporting.leaderboard import add_runs, read_board, render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MARK = (255, 0, 255)  # the colour of every image judged: the browser's screenshot must show it


@pytest.fixture
def board(locator: DataLocator, tmp_path: Path) -> Path:
    runs = []
    for vqa, label in (("pali17b", "sd2.1/pali"), ("mplug", "sd2.1/mplug")):
        result = rescore(
            RescoreRequest("dsg", ANSWERS / f"{vqa}_dsg.csv", t2i_model="sd2dot1", label=label),
            locator,
            out=tmp_path / vqa,
        )
        runs.append(result.run_dir)
    # a prompt text that would be markup if it were not escaped
    prompts = runs[0] / "prompts.jsonl"
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    worst = min(rows, key=lambda r: r["score"])
    worst["text"] = '<script>document.title="pwned"</script><b>bold</b> & more'
    for row in rows:  # the images the VQA model judged, as a QA run records them
        row["file"] = str(tmp_path / "images" / f"{row['prompt_id']}.png")
    (tmp_path / "images").mkdir()
    for row in sorted(rows, key=lambda r: r["score"])[:3]:
        Image.new("RGB", (64, 64), MARK).save(row["file"])
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "leaderboards" / "dsg.csv"
    add_runs(path, runs)
    return path


def test_rows_carry_scores_categories_and_provenance(board: Path) -> None:
    frame = read_board(board)
    assert list(frame["variant"]) == ["pali", "mplug"] and set(frame["model"]) == {"sd2.1"}
    pali = frame.iloc[0]
    assert round(pali["score"], 1) == 80.5 and pali["ci_low"] < pali["score"] < pali["ci_high"]
    assert set(json.loads(pali["by_category"])) == {
        "tifa",
        "paragraph",
        "relation",
        "count",
        "real_user",
        "pose",
        "defying",
        "text",
    }
    assert len(pali["config_hash"]) == 64 and len(json.loads(pali["hardest_prompts"])) == 3
    add_runs(board, [Path(pali["run"])])  # adding the same run again replaces its row
    assert len(read_board(board)) == 2


def test_render_markdown_and_escaped_html(board: Path, tmp_path: Path) -> None:
    written = render(board, tmp_path / "site", title="DSG-1K")
    markdown = written["markdown"].read_text()
    assert re.search(r"\| sd2\.1 +\| pali +\| dsg +\| DSG ↑ +\| +80\.49\d* \|", markdown)
    html = written["html"].read_text()
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    assert "<script>document.title" not in html and 'src="data:image/png;base64,' in html
    assert html.count('<img class="thumb"') == 3  # pali's hardest prompts have their images here; mplug's differ


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
@pytest.mark.slow
def test_a_reader_sees_the_page_in_chromium(board: Path, tmp_path: Path) -> None:
    written = render(board, tmp_path / "site", title="DSG-1K")
    url = written["html"].resolve().as_uri()

    def browse(fragment: str, *output: str) -> str:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=2000",
            *output,
        ]
        result = subprocess.run([CHROMIUM, *flags, url + fragment], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def dom(fragment: str) -> str:
        return browse(fragment, "--dump-dom")

    def order(page: str) -> list[str]:
        body = page[page.index('<table id="board">') : page.index("</table>")]
        return re.findall(r"<td>sd2\.1</td><td>(\w+)</td>", body.replace("\n", ""))

    ascending, descending = dom("#sort=4-asc"), dom("#sort=4-desc")
    assert order(ascending) == ["pali", "mplug"] and order(descending) == ["mplug", "pali"]  # 80.5 < 83.0
    assert "<title>DSG-1K</title>" in descending  # the injected script did not run
    assert "&lt;script&gt;document.title" in descending and "&lt;b&gt;bold&lt;/b&gt;" in descending
    assert descending.count('<img class="thumb"') == 3

    # what a reader sees, kept with the test's artefacts ($SELMA_TEST_ARTIFACTS in CI)
    shot = Path(os.environ.get("SELMA_TEST_ARTIFACTS", tmp_path)) / "leaderboard-chromium.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    browse("", f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars")
    with Image.open(shot) as image:
        marked = int((np.asarray(image.convert("RGB")) == MARK).all(axis=-1).sum())
    assert marked >= 3 * 80 * 80  # the three 96-pixel thumbnails were drawn (borders and rounding aside)


def test_leaderboard_cli(board: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "render", str(board), "--out", str(tmp_path / "out")]) == 0
    assert "sd2.1" in capsys.readouterr().out and (tmp_path / "out" / "index.html").is_file()
    (tmp_path / "bad.csv").write_text("model,score\nx,1\n")
    assert main(["leaderboard", "render", str(tmp_path / "bad.csv")]) == 2
    assert "bad.csv: line 1 (header): field 'variant': missing column(s)" in capsys.readouterr().err
