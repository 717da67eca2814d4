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
from selma.metaeval import meta_evaluate, read_likert
from selma.suites import DataLocator, load_suite
from selma.suites.spec import Question

LIKERT = DATA / "dsg" / "tifa160-likert-anns.csv"


@pytest.fixture(scope="module")
def meta() -> tuple[dict, list, list]:
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    return meta_evaluate(LIKERT, ANSWERS, suite)


def _human() -> pd.Series:
    likert = pd.read_csv(LIKERT)
    return likert.groupby(["t2i_model", "item_id"])["answer"].mean()


def test_every_vqa_and_question_set_is_evaluated(meta: tuple[dict, list, list]) -> None:
    results, records, _ = meta
    expected = {f"{v}/{q}" for v in ("pali17b", "mplug", "instructblip") for q in ("dsg", "dsg-nodep", "tifa", "vq2a")}
    assert set(results) == expected
    assert all(r.n == 800 for r in results.values())
    assert len(records) == 800 * len(expected)


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


def test_tifa_multiple_choice_is_left_out_without_the_question_file(meta: tuple[dict, list, list]) -> None:
    results, _, notes = meta
    assert results["pali17b/tifa"].yes_no_only and results["pali17b/tifa"].n_questions_excluded == 2730
    assert any("pali17b/tifa: 2730 questions" in n and "--tifa-questions" in n for n in notes)
    assert not results["pali17b/vq2a"].yes_no_only


def test_tifa_question_file_scores_multiple_choice_questions(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    rows = pd.read_csv(ANSWERS / "pali17b_tifa.csv", keep_default_na=False)
    rows.to_csv(answers / "pali17b_tifa.csv", index=False)
    suite = load_suite("tifa160", DataLocator.from_env(DATA, offline=True))
    source = {p.id: p.meta["source_id"] for p in suite.prompts}
    # a question file whose expected answer for every multiple-choice question is its first choice
    questions = []
    for row in rows.drop_duplicates(["item_id", "question"]).itertuples():
        if "Choices: yes, no." in row.question:
            continue
        text, choices = row.question.removeprefix("Question: ").split(" Choices: ")
        options = choices.removesuffix(". Answer:").split(", ")
        questions.append(Question(source[row.item_id], text, text, options[0], tuple(options)))
    results, records, _ = meta_evaluate(LIKERT, answers, suite, questions)
    agreement = results["pali17b/tifa"]
    assert not agreement.yes_no_only and agreement.n == 800
    first = rows[rows["item_id"] == "tifa160_63"]
    first = first[first["t2i_model"] == "mini-dalle"]
    expected = []
    for row in first.itertuples():
        if "Choices: yes, no." in row.question:
            expected.append(row.answer == "yes")
        else:
            expected.append(row.answer == row.question.split(" Choices: ")[1].split(", ")[0].removesuffix(". Answer:"))
    record = next(r for r in records if r["item_id"] == "tifa160_63" and r["t2i_model"] == "mini-dalle")
    assert record["metric"] == pytest.approx(100 * np.mean(expected))


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
