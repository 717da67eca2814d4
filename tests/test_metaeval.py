from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ANSWERS, DATA
from scipy import stats

from selma.errors import DataInputError
from selma.harness.metaeval import meta_evaluate, read_likert
from selma.harness.suites import DataLocator, load_suite
from selma.harness.suites.spec import Question

LIKERT = DATA / "dsg" / "tifa160-likert-anns.csv"


@pytest.fixture(scope="module")
def meta() -> tuple[dict, list, list]:
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    return meta_evaluate(LIKERT, ANSWERS, suite)


def _human() -> pd.Series:
    likert = pd.read_csv(LIKERT)
    return likert.groupby(["t2i_model", "item_id"])["answer"].mean()


# j-min/DSG's README, "Human correlation on TIFA-160" (scripts/tifa160_correlation.py): (Spearman, Kendall)
README_TABLE = {
    "mplug/tifa": (0.352, 0.259),
    "mplug/vq2a": (0.212, 0.164),
    "mplug/dsg": (0.463, 0.380),
    "mplug/dsg-nodep": (0.464, 0.378),
    "instructblip/tifa": (0.460, 0.360),
    "instructblip/vq2a": (0.426, 0.352),
    "instructblip/dsg": (0.442, 0.364),
    "instructblip/dsg-nodep": (0.436, 0.355),
    "pali17b/tifa": (0.431, 0.323),
    "pali17b/vq2a": (0.207, 0.157),
    "pali17b/dsg": (0.571, 0.458),
    "pali17b/dsg-nodep": (0.570, 0.457),
}


def test_the_readme_table_is_reproduced(meta: tuple[dict, list, list]) -> None:
    results, records, notes = meta
    assert set(results) == set(README_TABLE)
    assert all(r.n == 800 for r in results.values())
    assert len(records) == 800 * len(README_TABLE)
    for key, (rho, tau) in README_TABLE.items():
        if key.endswith("/tifa"):  # gold answers rebuilt without TIFA's question file: within 0.006
            assert results[key].tifa_gold == "rebuilt"
            assert abs(results[key].spearman - rho) <= 0.006 and abs(results[key].kendall - tau) <= 0.006, key
        else:  # to the printed precision
            assert (round(results[key].spearman, 3), round(results[key].kendall, 3)) == (rho, tau), key
    assert round(results["pali17b/tifa"].spearman, 3) == 0.431  # PaLI's file carries every question's choices
    assert any("rebuilt from pali17b_tifa.csv" in n and "--tifa-questions" in n for n in notes)


def test_rebuilt_gold_rules_hold_on_tifas_sample() -> None:
    from selma.harness.metaeval import rebuilt_gold

    sample = json.loads((DATA / "tifa" / "sample_question_answers.json").read_text())
    assert len(sample) == 19 and {q["element_type"] for q in sample} >= {"counting", "color", "location"}
    for q in sample:
        assert rebuilt_gold(q["question"], q["choices"], q["caption"]) == q["answer"], q["question"]


def test_caption_counts() -> None:
    from selma.harness.metaeval import caption_count

    assert caption_count("how many red flowers are there?", "two red flowers and three white flowers") == "2"
    assert caption_count("how many white flowers are there?", "two red flowers and three white flowers") == "3"
    assert caption_count("how many people are in the band?", "a four-piece band on a stage") == "4"
    assert caption_count("how many books are there?", "A stack of 3 books. A green book") == "3"
    assert caption_count("how many cats are there?", "cats and dogs") is None


def test_vq2a_agreement_equals_an_independent_share_of_yes(meta: tuple[dict, list, list]) -> None:
    results, _, _ = meta
    answers = pd.read_csv(ANSWERS / "pali17b_vq2a.csv", keep_default_na=False)
    share = answers.assign(yes=answers["answer"] == "yes").groupby(["t2i_model", "item_id"])["yes"].mean()
    human = _human()
    metric = [share.get(key, 0.0) for key in human.index]
    rho = stats.spearmanr(metric, human.to_numpy()).statistic
    tau = stats.kendalltau(metric, human.to_numpy()).statistic
    assert results["pali17b/vq2a"].spearman == pytest.approx(rho)
    assert results["pali17b/vq2a"].kendall == pytest.approx(tau)


def test_dsg_without_dependencies_equals_share_of_yes_over_dsg_questions(meta: tuple[dict, list, list]) -> None:
    results, records, _ = meta
    answers = pd.read_csv(ANSWERS / "mplug_dsg.csv", keep_default_na=False)
    share = answers.assign(yes=answers["answer"] == "yes").groupby(["t2i_model", "item_id"])["yes"].mean()
    human = _human()
    metric = np.array([share.get(key, 0.0) for key in human.index])
    assert results["mplug/dsg-nodep"].spearman == pytest.approx(stats.spearmanr(metric, human.to_numpy()).statistic)
    with_dep = {(r["t2i_model"], r["item_id"]): r["metric"] for r in records if r["key"] == "mplug/dsg"}
    assert all(with_dep[key] <= 100 * m + 1e-9 for key, m in zip(human.index, metric, strict=True))
    assert any(with_dep[key] < 100 * m - 1e-9 for key, m in zip(human.index, metric, strict=True))


def test_tifa_question_file_is_joined_by_position_and_exact_matched(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    rows = pd.read_csv(ANSWERS / "mplug_tifa.csv", keep_default_na=False)  # bare questions, no choices
    rows.to_csv(answers / "mplug_tifa.csv", index=False)
    pali = pd.read_csv(ANSWERS / "pali17b_tifa.csv", keep_default_na=False)
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    source = {p.id: p.meta["source_id"] for p in suite.prompts}
    # a TIFA question file (in the answer files' order) whose gold answer is each question's *last* choice
    questions = []
    first_model = pali[pali["t2i_model"] == "mini-dalle"]
    for row in first_model.itertuples():
        text, choices = row.question.removeprefix("Question: ").split(" Choices: ")
        options = choices.removesuffix(". Answer:").split(", ")
        questions.append(Question(source[row.item_id], text, text, options[-1], tuple(options)))
    results, records, notes = meta_evaluate(LIKERT, answers, suite, questions)
    assert results["mplug/tifa"].tifa_gold == "question-file" and not notes
    item, model = "tifa160_63", "sd1dot5"
    mine = rows[(rows["item_id"] == item) & (rows["t2i_model"] == model)]
    gold = [q for q in questions if q.prompt_id == source[item]]
    expected = [
        a == ("yes" if q.choices == ("yes", "no") else q.answer) for a, q in zip(mine["answer"], gold, strict=True)
    ]
    record = next(r for r in records if r["item_id"] == item and r["t2i_model"] == model)
    assert record["metric"] == pytest.approx(100 * np.mean(expected))


def test_tifa_files_without_any_choices_are_skipped_with_a_note(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    for name in ("mplug_tifa.csv", "mplug_vq2a.csv"):
        shutil.copy(ANSWERS / name, answers / name)
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    results, _, notes = meta_evaluate(LIKERT, answers, suite)
    assert set(results) == {"mplug/vq2a"} and any("--tifa-questions" in n for n in notes)


def test_bad_likert_rating_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "likert.csv"
    shutil.copy(LIKERT, path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",seven"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataInputError, match=r"likert.csv: line 4: field 'answer': expected a rating from 1 to 5"):
        read_likert(path)


def test_meta_eval_cli_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selma.cli import main

    code = main(
        [
            *["meta-eval", "--likert", str(LIKERT), "--answers", str(ANSWERS), "--data-dir", str(DATA)],
            *["--out", str(tmp_path / "meta"), "--json"],
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["results"]["pali17b/dsg"]["n"] == 800
    assert round(printed["results"]["pali17b/dsg"]["spearman"], 3) == 0.571
    on_disk = json.loads((tmp_path / "meta" / "summary.json").read_text())
    assert on_disk["results"] == printed["results"]
    assert str(LIKERT) in on_disk["provenance"]["inputs"]
    assert (tmp_path / "meta" / "images.jsonl").read_text().count("\n") == 800 * 12


def test_non_integer_dsg_question_id_names_line_and_field(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    rows = (ANSWERS / "mplug_dsg.csv").read_text().splitlines()
    rows[2] = rows[2].replace(",Are there lights?,2,", ",Are there lights?,two,")
    (answers / "mplug_dsg.csv").write_text("\n".join(rows) + "\n")
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    with pytest.raises(DataInputError, match=r"mplug_dsg.csv: line 3: field 'question_id': expected an integer"):
        meta_evaluate(LIKERT, answers, suite)
