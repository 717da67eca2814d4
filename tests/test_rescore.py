from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ANSWERS, DATA

from selma.errors import DataInputError, SelmaError
from selma.harness.rescore import RescoreRequest, rescore
from selma.harness.suites import DataLocator
from selma.harness.suites.data import sha256_file
from selma.results.store import read_records, read_summary

PALI = ANSWERS / "pali17b_dsg.csv"
TIFA_SAMPLE = DATA / "tifa" / "sample_evaluation_result.json"


# j-min/DSG's README (scripts/t2i_eval_dsg1k.py output): PaLI-17B on SD v2.1 images, per category and overall
DSG_README_PALI = {
    "tifa": 88.1,
    "paragraph": 85.1,
    "relation": 34.4,
    "count": 70.4,
    "real_user": 89.7,
    "pose": 89.6,
    "defying": 84.4,
    "text": 83.7,
}


def test_dsg_pali_sd21_reproduces_the_published_table(locator: DataLocator, tmp_path: Path) -> None:
    result = rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1"), locator, out=tmp_path / "run")
    s = result.summary
    assert s.convention == "dsg" and round(s.score, 1) == 80.5 and round(s.score, 2) == 80.49
    assert round(s.score_no_dependency, 1) == 82.9
    assert {k: round(v, 1) for k, v in s.by_category.items()} == DSG_README_PALI
    assert s.n_prompts == 1060 and s.n_prompts_answered == 1059
    prompts = read_records(result.run_dir, "prompts")
    assert len(prompts) == 1060
    assert next(p for p in prompts if p["prompt_id"] == "tifa160_134")["score"] == 0.0
    # micro = mean over answered questions; by_category = mean of per-prompt scores within the category
    questions = [q for q in read_records(result.run_dir, "questions") if q["prompt_id"] != "tifa160_134"]
    assert s.n_questions == len(questions) == 8174
    assert s.micro == pytest.approx(100 * sum(q["score"] for q in questions) / len(questions))
    assert s.macro == pytest.approx(s.score)
    count = [p["score"] for p in prompts if p["category"] == "count"]
    assert s.by_category["count"] == pytest.approx(sum(count) / len(count))
    low, high = s.ci["score"]
    assert low < s.score < high and high - low < 5
    assert s.n_blank_answers == 69


def _official_dsg(answers_csv: Path, t2i_model: str) -> dict[str, float]:
    """j-min/DSG's data_utils loader + calc_vqa_score, line by line, on one model's released answers."""
    import pandas as pd

    anns = pd.read_csv(DATA / "dsg" / "dsg-1k-anns.csv")
    dependency: dict[str, dict[int, list[int]]] = {}
    for item_id, item_df in anns.groupby("item_id", sort=False):
        try:
            qid2dep = {}
            for _, row in item_df.iterrows():
                output = row["dependency"]
                if type(output) is str:
                    output = [int(x.strip()) for x in output.split(",")]
                qid2dep[row["proposition_id"]] = output
        except Exception:
            qid2dep = {}
        dependency[item_id] = qid2dep
    answers = pd.read_csv(answers_csv)
    answers = answers[answers.t2i_model == t2i_model]
    scores = {}
    for item_id in dependency:
        rows = answers[answers.item_id == item_id]
        qid2answer = {int(r.question_id): r.answer for r in rows.itertuples()} or {1: ""}
        qid2scores = {qid: float(a == "yes") for qid, a in qid2answer.items()}
        filtered = dict(qid2scores)
        for qid, parents in dependency[item_id].items():
            if any(p != 0 and qid2scores.get(p, 0) == 0 for p in parents):
                filtered[qid] = 0.0
        scores[item_id] = 100 * sum(filtered.values()) / len(qid2scores)
    return scores


@pytest.mark.parametrize("vqa", ["mplug", "instructblip"])
def test_dsg_equals_the_official_code_per_prompt(vqa: str, locator: DataLocator, tmp_path: Path) -> None:
    path = ANSWERS / f"{vqa}_dsg.csv"
    result = rescore(RescoreRequest("dsg", path, t2i_model="sd2dot1"), locator, out=tmp_path / "run")
    official = _official_dsg(path, "sd2dot1")
    ours = {p["prompt_id"]: p["score"] for p in read_records(result.run_dir, "prompts")}
    assert ours == pytest.approx(official)
    assert round(result.summary.score, 1) == {"mplug": 83.0, "instructblip": 86.9}[vqa]


def _selma_dsg_evaluation(answers_csv: Path, t2i_model: str) -> tuple[float, dict[str, float], dict[str, float]]:
    """SELMA's DSG/evaluation.py, line by line, with the released answers in place of mPLUG's calls
    (prompts without answers are left out: SELMA's script would stop at their missing image).
    """
    import csv

    import numpy as np
    import pandas as pd

    data_all: dict[str, list[list[str]]] = {}
    with open(DATA / "dsg" / "dsg-1k-anns.csv") as f:
        data = csv.reader(f, delimiter=",")
        next(data)
        for row in data:
            data_all.setdefault(row[0], []).append(row)
    released = pd.read_csv(answers_csv, keep_default_na=False)
    released = released[released.t2i_model == t2i_model]
    vqa = {(r.item_id, str(r.question_id)): r.answer for r in released.itertuples()}
    results = {}
    for k, v in data_all.items():
        if not any((k, item[3]) in vqa for item in v):
            continue
        id2scores: dict[str, float] = {}
        id2dependency = {}
        for item in v:
            id = item[3]
            answer = vqa[(k, id)]
            id2scores[str(id)] = float(answer == "yes")
            id2dependency[str(id)] = str(item[4]).split(",")
        for id, parent_ids in id2dependency.items():
            any_parent_answered_no = False
            for parent_id in parent_ids:
                if parent_id == "0":
                    continue
                if parent_id in id2scores and id2scores[parent_id] == 0:
                    any_parent_answered_no = True
                    break
            if any_parent_answered_no:
                id2scores[id] = 0
        results[k] = [sum(id2scores.values()) / len(id2scores), id2scores]
    results_dict: dict[str, list[float]] = {}
    for k, v in results.items():
        for q in data_all[k]:
            results_dict.setdefault(q[6], []).append(v[1][q[3]])
    total = sum(np.sum(v) for v in results_dict.values())
    count = sum(len(v) for v in results_dict.values())
    per_prompt = {k: 100 * v[0] for k, v in results.items()}
    return 100 * total / count, {k: 100 * float(np.mean(v)) for k, v in results_dict.items()}, per_prompt


def test_selma_dsg_convention_equals_selmas_evaluation_py(locator: DataLocator, tmp_path: Path) -> None:
    path = ANSWERS / "mplug_dsg.csv"
    request = RescoreRequest("dsg", path, t2i_model="sd2dot1", convention="dsg-selma")
    result = rescore(request, locator, out=tmp_path / "run")
    average, by_detail, per_prompt = _selma_dsg_evaluation(path, "sd2dot1")
    s = result.summary
    assert s.convention == "dsg-selma" and s.score == pytest.approx(average) and round(s.score, 2) == 81.54
    assert s.by_category == pytest.approx(by_detail)
    ours = {p["prompt_id"]: p["score"] for p in read_records(result.run_dir, "prompts")}
    assert ours == pytest.approx(per_prompt)
    assert s.n_prompts == 1059  # the prompt without answers is left out, not scored 0
    low, high = s.ci["score"]
    assert low < s.score < high
    # the official convention on the same answers differs (per-prompt mean, one-level dependencies)
    official = rescore(RescoreRequest("dsg", path, t2i_model="sd2dot1"), locator, out=tmp_path / "official")
    assert round(official.summary.score, 2) == 83.05 and round(official.summary.micro, 2) != 81.54


def test_conventions_are_checked_against_the_suite(locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match="convention 'tifa-selma' scores tifa, not dsg"):
        rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1", convention="tifa-selma"), locator, out=tmp_path)


def test_tifa_default_matcher_is_sbert_and_says_how_to_supply_it(locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match=r"all-mpnet-base-v2.*--matcher-model PATH.*--matcher normalized"):
        rescore(RescoreRequest("tifa", TIFA_SAMPLE), locator, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_dependency_rule_zeroes_children_of_a_failed_parent(locator: DataLocator, tmp_path: Path) -> None:
    result = rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1"), locator, out=tmp_path / "run")
    questions = read_records(result.run_dir, "questions")
    raw = {(q["prompt_id"], q["question_id"]): q["raw"] for q in questions}
    zeroed = [q for q in questions if q["raw"] == 1 and q["score"] == 0]
    assert zeroed, "the released answers contain children of failed parents"
    for q in zeroed:
        assert any(raw.get((q["prompt_id"], p), 0) == 0 for p in q["parents"])
    for q in questions:
        if q["raw"] == 1 and all(raw.get((q["prompt_id"], p), 0) == 1 for p in q["parents"]):
            assert q["score"] == 1


def test_tifa_sample_reproduces_81_25(locator: DataLocator, tmp_path: Path) -> None:
    s = rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized"), locator, out=tmp_path / "run").summary
    official = json.loads(TIFA_SAMPLE.read_text())
    assert s.score == pytest.approx(100 * official["tifa_average"])
    assert s.score == pytest.approx(81.25)
    assert s.stdev == pytest.approx(100 * official["tifa_stdev"])
    assert s.by_element_type == pytest.approx({k: 100 * v for k, v in official["accuracy_by_type"].items()})
    assert s.n_prompts == 2 and s.n_questions == 19


def test_tifa_maps_free_form_answers_like_the_official_result(locator: DataLocator, tmp_path: Path) -> None:
    result = rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized"), locator, out=tmp_path / "run")
    official = json.loads(TIFA_SAMPLE.read_text())["question_details"]
    for record in read_records(result.run_dir, "questions"):
        item = official[record["prompt_id"]][record["question_id"]]
        assert record["matched"] == item["multiple_choice_vqa"]
        assert record["score"] == item["scores"]


def test_provenance_and_records_on_disk(locator: DataLocator, tmp_path: Path) -> None:
    run = rescore(
        RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized", seed=7), locator, out=tmp_path / "run"
    ).run_dir
    summary = json.loads((run / "summary.json").read_text())
    prov = summary["provenance"]
    assert prov["package_version"] and prov["seed"] == 7 and len(prov["config_hash"]) == 64
    assert prov["config"]["suite"] == "tifa" and prov["config"]["matcher"] == "normalized"
    assert prov["config"]["convention"] == "tifa" and summary["convention"] == "tifa"
    assert any("'normalized', not the convention's 'sbert'" in note for note in summary["notes"])
    assert prov["inputs"][str(TIFA_SAMPLE)] == sha256_file(TIFA_SAMPLE)
    assert prov["inputs"][str(DATA / "tifa" / "tifa_v1.0_text_inputs.json")] == sha256_file(
        DATA / "tifa" / "tifa_v1.0_text_inputs.json"
    )
    assert sorted(p.name for p in run.iterdir()) == [
        ".selma-stage.json",
        "prompts.jsonl",
        "questions.jsonl",
        "summary.json",
    ]
    assert read_summary(run).score == pytest.approx(81.25)


def test_identical_rerun_is_reused_and_changed_setting_is_not(locator: DataLocator) -> None:
    first = rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized"), locator)
    again = rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized"), locator)
    assert not first.cached and again.cached and again.run_dir == first.run_dir
    other = rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized", seed=1), locator)
    assert not other.cached and other.run_dir != first.run_dir
    with pytest.raises(SelmaError, match=r"holds a run made with other settings \(seed: 0 -> 2\)"):
        rescore(RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized", seed=2), locator, out=first.run_dir)
    forced = rescore(
        RescoreRequest("tifa", TIFA_SAMPLE, matcher="normalized", seed=2), locator, out=first.run_dir, force=True
    )
    assert read_summary(forced.run_dir).provenance.seed == 2


def test_confidence_intervals_are_deterministic_under_the_seed(locator: DataLocator, tmp_path: Path) -> None:
    a = rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1", seed=3), locator, out=tmp_path / "a").summary
    b = rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1", seed=3), locator, out=tmp_path / "b").summary
    c = rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1", seed=4), locator, out=tmp_path / "c").summary
    assert a.ci == b.ci and a.ci != c.ci


# --- bad inputs: one clear message naming file, row and field; no run directory left behind ---

HEADER = "dsg_prompt_split,qg_model,t2i_model,item_id,question,question_id,dependency_id,answer\n"


def _bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answers.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["the file is empty"]),
        (HEADER, ["header but no rows"]),
        (
            "item_id,question_id,reply\nwhoops_5,1,yes\n",
            ["line 1 (header)", "field 'answer'", "missing column(s) answer"],
        ),
        (
            HEADER + "whoops,dsg,sd2dot1,whoops_5,Q?,1,0,yes\nwhoops,dsg,sd2dot1,whoops_5,Q?,1,0,no\n",
            ["line 3", "field 'question_id'", "duplicate id", "line 2"],
        ),
        (HEADER + "x,dsg,sd2dot1,nosuch_1,Q?,1,0,yes\n", ["line 2", "field 'item_id'", "unknown prompt 'nosuch_1'"]),
        (HEADER + "whoops,dsg,sd2dot1,whoops_5,Q?,99,0,yes\n", ["line 2", "field 'question_id'", "no question '99'"]),
    ],
)
def test_bad_answer_files(tmp_path: Path, locator: DataLocator, text: str, expected: list[str]) -> None:
    path = _bad(tmp_path, text)
    with pytest.raises(DataInputError) as info:
        rescore(RescoreRequest("dsg", path), locator, out=tmp_path / "run")
    message = str(info.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".run.tmp-*"))


def test_blank_answers_score_zero_or_fail_under_strict(tmp_path: Path, locator: DataLocator) -> None:
    path = _bad(tmp_path, HEADER + "whoops,dsg,sd2dot1,whoops_5,Q?,1,0,yes\nwhoops,dsg,sd2dot1,whoops_5,Q?,2,1,\n")
    s = rescore(RescoreRequest("dsg", path), locator, out=tmp_path / "run").summary
    assert s.n_blank_answers == 1 and s.n_prompts_answered == 1
    assert s.n_missing_answers == 1  # whoops_5 has 3 questions; question 3 has no row
    with pytest.raises(DataInputError, match=r"line 3: field 'answer': blank answer"):
        rescore(RescoreRequest("dsg", path, strict=True), locator, out=tmp_path / "strict")
    assert not (tmp_path / "strict").exists()


def test_nan_answer_in_tifa_json(tmp_path: Path, locator: DataLocator) -> None:
    data = json.loads(TIFA_SAMPLE.read_text())
    data["question_details"]["drawbench_52"]["are there cats?"]["free_form_vqa"] = 3
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataInputError) as info:
        rescore(RescoreRequest("tifa", path, matcher="normalized"), locator, out=tmp_path / "run")
    assert "question_details.drawbench_52.'are there cats?'" in str(info.value)
    assert "field 'free_form_vqa'" in str(info.value)
    path.write_text(TIFA_SAMPLE.read_text().replace('"free_form_vqa": "yes"', '"free_form_vqa": NaN', 1))
    with pytest.raises(DataInputError, match="blank answer"):
        rescore(RescoreRequest("tifa", path, matcher="normalized", strict=True), locator, out=tmp_path / "run")
    assert (
        rescore(
            RescoreRequest("tifa", path, matcher="normalized"), locator, out=tmp_path / "run"
        ).summary.n_blank_answers
        == 1
    )


def test_several_t2i_models_need_a_choice(locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match=r"several t2i models .*mini-dalle.*--t2i-model"):
        rescore(RescoreRequest("dsg", PALI), locator, out=tmp_path / "run")
    with pytest.raises(SelmaError, match=r"no answers for t2i model 'sd9'"):
        rescore(RescoreRequest("dsg", PALI, t2i_model="sd9"), locator, out=tmp_path / "run")


def test_unknown_prompt_source_in_a_suite_file(data_copy: Path, tmp_path: Path) -> None:
    path = data_copy / "dsg" / "dsg-1k-anns.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace("localized_narratives_95", "mystery_1", 1)
    path.write_text("".join(lines))
    locator = DataLocator.from_env(data_copy, offline=True, overrides={"questions": path})
    with pytest.raises(DataInputError) as info:
        rescore(RescoreRequest("dsg", PALI, t2i_model="sd2dot1"), locator, out=tmp_path / "run")
    assert f"{path}: line 6: field 'item_id': unknown prompt source 'mystery'" in str(info.value)


def test_tifa160_scores_other_t2i_models(locator: DataLocator, tmp_path: Path) -> None:
    s = rescore(RescoreRequest("tifa160", PALI, t2i_model="mini-dalle"), locator, out=tmp_path / "run").summary
    assert s.n_prompts == 160 and s.n_prompts_answered == 159
    assert set(s.by_category) == {"coco", "partiprompt", "paintskill", "drawbench"}
    with pytest.raises(
        DataInputError, match="field 'item_id': unknown prompt 'stanford_paragraph_0' for suite 'tifa160'"
    ):
        rescore(RescoreRequest("tifa160", PALI, t2i_model="sd2dot1"), locator, out=tmp_path / "run2")


def test_missing_answers_file(locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match=r"nope.csv: no such answers file"):
        rescore(RescoreRequest("dsg", tmp_path / "nope.csv"), locator, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_suites_without_questions_cannot_be_rescored(locator: DataLocator, tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match="suite 'drawbench' has no question-answer scoring"):
        rescore(RescoreRequest("drawbench", PALI), locator, out=tmp_path / "run")
