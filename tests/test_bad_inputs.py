"""A corpus of bad inputs, one per case, through every subcommand: each must end with exit status 2 and one
line naming what is wrong (file, row and field, or the setting), print no traceback, and leave the output
folder as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ANSWERS, DATA
from PIL import Image

from selma.cli import main

LIKERT = DATA / "dsg" / "tifa160-likert-anns.csv"
TIFA_SAMPLE = DATA / "tifa" / "sample_evaluation_result.json"


@dataclass(frozen=True)
class Case:
    """argv (``{w}`` is the working folder, ``{...}`` a fixture path), what the error line must contain."""

    name: str
    argv: list[str]
    expect: str
    setup: Callable[[Path], None] | None = None


def _write(relative: str, text: str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        (w / relative).parent.mkdir(parents=True, exist_ok=True)
        (w / relative).write_text(text)

    return setup


def _image_folder(w: Path, *, metadata: str | None = None, broken: str | None = None) -> None:
    folder = w / "imgs"
    (folder / "images").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * k, dtype=np.uint8)).save(folder / "images" / f"a_{k}.png")
    if broken == "not-an-image":
        (folder / "images" / "a_1.png").write_text("this is not a png")
    elif broken == "truncated":
        data = (folder / "images" / "a_1.png").read_bytes()
        (folder / "images" / "a_1.png").write_bytes(data[: len(data) // 2])
    rows = [{"file_name": f"images/a_{k}.png", "text": f"a picture {k}", "prompt_id": "drawbench_0"} for k in range(2)]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    (folder / "metadata.jsonl").write_text(text if metadata is None else metadata)


def _run(w: Path) -> None:
    (w / "run").mkdir()
    (w / "run" / "summary.json").write_text('{"schema_version": 1, "kind": "resc')  # cut mid-file


def _board(w: Path) -> None:
    header = "model,variant,suite,metric,score,ci_low,ci_high,n_prompts,by_category,config_hash,run,hardest_prompts\n"
    (w / "board.csv").write_text(header + 'sd,base,dsg,dsg,high,1,2,3,{},abc,run,"[]"\n')


def _likert_dir(w: Path) -> None:
    (w / "likert.csv").mkdir()


def _truncated_answers(w: Path) -> None:
    (w / "answers").mkdir()
    lines = (ANSWERS / "mplug_dsg.csv").read_text().splitlines()
    (w / "answers" / "mplug_dsg.csv").write_text("\n".join(lines[:3000]) + "\n")  # cut at a line boundary


def _prompt_file(w: Path, *, junk: bool = False, seed: int = 0) -> None:
    from selma.recipe.datagen.loop import generate_prompts
    from selma.world.plugin import world_skills
    from selma.world.prompt_writer import WorldWriter

    generate_prompts([world_skills()["world_count"]], 1, WorldWriter(), w / "p.jsonl", seed=seed, progress=False)
    if junk:
        with (w / "p.jsonl").open("a") as handle:
            handle.write('{"foo": 1}\n')


def _loras(w: Path) -> None:
    (w / "lora-trunc").mkdir()
    (w / "lora-trunc" / "pytorch_lora_weights.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a')
    (w / "lora-empty").mkdir()
    (w / "lora-empty" / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (w / "lora-junk").mkdir()
    (w / "lora-junk" / "pytorch_lora_weights.safetensors").write_bytes(b"junk" * 100)


STUDY = "name: {name}\nbase_model: tiny-sd1\nskills: [coco]\nvariants: [base]\n"

CASES = [
    # rescore, meta-eval, compare, report, leaderboard
    Case("rescore-bootstrap-0", ["rescore", "--suite", "dsg", "--answers", "x.csv", "--bootstrap", "0"], "--bootstrap"),
    Case("rescore-missing-answers", ["rescore", "--suite", "dsg", "--answers", "{w}/nope.csv"], "nope.csv"),
    Case(
        "rescore-unknown-suite", ["rescore", "--suite", "dsg2", "--answers", str(TIFA_SAMPLE)], "unknown suite 'dsg2'"
    ),
    Case(
        "rescore-foreign-convention",
        ["rescore", "--suite", "dsg", "--answers", str(ANSWERS / "pali17b_dsg.csv"), "--convention", "tifa-selma"],
        "scores tifa, not dsg",
    ),
    Case(
        "rescore-unknown-file-role",
        ["rescore", "--suite", "dsg", "--answers", str(ANSWERS / "pali17b_dsg.csv"), "--file", "nosuchrole={w}/x"],
        "no file role 'nosuchrole'",
    ),
    Case("meta-eval-missing-likert", ["meta-eval", "--likert", "{w}/l.csv", "--answers", str(ANSWERS)], "no such file"),
    Case(
        "meta-eval-likert-folder",
        ["meta-eval", "--likert", "{w}/likert.csv", "--answers", str(ANSWERS)],
        "not a file",
        _likert_dir,
    ),
    Case(
        "meta-eval-truncated-answers",
        ["meta-eval", "--likert", str(LIKERT), "--answers", "{w}/answers"],
        "a truncated or incomplete answer file",
        _truncated_answers,
    ),
    Case("meta-eval-no-answer-files", ["meta-eval", "--likert", str(LIKERT), "--answers", "{w}"], "no answer files"),
    Case("compare-truncated-summary", ["compare", "{w}/run", "{w}/run"], "summary.json: not valid JSON", _run),
    Case("compare-not-a-run", ["compare", "{w}", "{w}"], "not a run directory"),
    Case("compare-bootstrap-0", ["compare", "{w}", "{w}", "--bootstrap", "0"], "--bootstrap"),
    Case("report-truncated-summary", ["report", "{w}/run", "--out", "{w}/rep"], "not valid JSON", _run),
    Case("leaderboard-add-truncated", ["leaderboard", "add", "{w}/b.csv", "{w}/run"], "not valid JSON", _run),
    Case(
        "leaderboard-render-non-numeric",
        ["leaderboard", "render", "{w}/board.csv", "--out", "{w}/site"],
        "line 2: field 'score': expected a number, got 'high'",
        _board,
    ),
    Case("leaderboard-render-missing", ["leaderboard", "render", "{w}/nope.csv"], "nope.csv: no such leaderboard"),
    Case(
        "leaderboard-render-paper-numbers",
        ["leaderboard", "render", str(Path(__file__).parents[1] / "leaderboards" / "selma-paper.csv"), "--out", "{w}"],
        "the paper's published numbers, not a leaderboard",
    ),
    Case("suites-export-unknown-suite", ["suites", "export", "nope", "--out", "{w}/p.txt"], "nope"),
    Case("models-tiny-scorer-no-out", ["models", "tiny-scorer", "blip-vqa"], "needs a kind"),
    # score
    Case(
        "score-missing-image",
        ["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "pickscore"],
        "line 1: field 'file_name': no image 'images/zz.png'",
        lambda w: _image_folder(w, metadata='{"file_name": "images/zz.png", "prompt_id": "drawbench_0"}\n'),
    ),
    Case(
        "score-path-outside",
        ["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "pickscore"],
        "field 'file_name': '../../../../etc/hostname' points outside",
        lambda w: _image_folder(w, metadata='{"file_name": "../../../../etc/hostname", "prompt_id": "drawbench_0"}\n'),
    ),
    Case(
        "score-metadata-not-json",
        ["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "pickscore"],
        "metadata.jsonl: line 1: not valid JSON",
        lambda w: _image_folder(w, metadata='{"file_name": \n'),
    ),
    Case("score-limit-0", ["score", "--suite", "dsg", "--images", "{w}", "--metric", "dsg", "--limit", "0"], "--limit"),
    Case(
        "score-unknown-metric",
        ["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "clipscore"],
        "invalid choice: 'clipscore'",
        _image_folder,
    ),
    Case(
        "score-missing-checkpoint",
        [
            *["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "pickscore"],
            *["--checkpoint", "model={w}/nope", "--checkpoint", "processor={w}/nope"],
        ],
        "cannot load pickscore",
        _image_folder,
    ),
    Case(
        "score-bad-med-config",
        [
            *["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "imagereward"],
            *["--checkpoint", "checkpoint={w}/ir.pt", "--checkpoint", "med_config={w}/med.json"],
        ],
        "cannot load imagereward",
        lambda w: (_image_folder(w), _write("med.json", "{not json")(w), _write("ir.pt", "x")(w)),
    ),
    Case(
        "score-qa-metric-on-a-suite-without-questions",
        ["score", "--suite", "drawbench", "--images", "{w}/imgs", "--metric", "dsg"],
        "needs a suite with dsg questions",
        _image_folder,
    ),
    Case(
        "score-unknown-vqa",
        ["score", "--suite", "dsg", "--images", "{w}/imgs", "--metric", "dsg", "--checkpoint", "vqa=nosuch"],
        "unknown VQA model 'nosuch'",
        lambda w: _image_folder(w, metadata='{"file_name": "images/a_0.png", "prompt_id": "whoops_5"}\n'),
    ),
    # generate
    Case(
        "generate-batch-0",
        ["generate", "--prompts", "p", "--model", "tiny-sd1", "--out", "o", "--batch-size", "0"],
        "--batch-size",
    ),
    Case(
        "generate-resolution-7",
        ["generate", "--prompts", "p", "--model", "tiny-sd1", "--out", "o", "--resolution", "7"],
        "multiple of 8",
    ),
    Case(
        "generate-steps-0",
        ["generate", "--prompts", "p", "--model", "tiny-sd1", "--out", "o", "--inference-steps", "0"],
        "--inference-steps",
    ),
    Case(
        "generate-limit-negative",
        ["generate", "--prompts", "p", "--model", "tiny-sd1", "--out", "o", "--limit", "-1"],
        "--limit",
    ),
    Case(
        "generate-prompts-folder",
        ["generate", "--prompts", "{w}", "--model", "tiny-sd1", "--out", "{w}/o"],
        "a folder, not a prompt file",
    ),
    Case(
        "generate-colliding-ids",
        ["generate", "--prompts", "{w}/p.jsonl", "--model", "tiny-sd1", "--out", "{w}/o"],
        "p.jsonl: line 2: field 'id': duplicate prompt id 'a/b' ('a/b' and 'a b' both make the file name 'a-b')",
        _write("p.jsonl", '{"id": "a b", "text": "a cat"}\n{"id": "a/b", "text": "a dog"}\n'),
    ),
    Case(
        "generate-missing-prompts",
        ["generate", "--prompts", "{w}/nope.jsonl", "--model", "tiny-sd1", "--out", "{w}/o"],
        "nope.jsonl: no such prompt file",
    ),
    Case(
        "generate-unknown-model",
        ["generate", "--prompts", "{w}/p.txt", "--model", "sd-v9", "--out", "{w}/o"],
        "unknown model 'sd-v9'",
        _write("p.txt", "a cat\n"),
    ),
    Case(
        "generate-out-is-a-file",
        ["generate", "--prompts", "{w}/p.txt", "--model", "tiny-sd1", "--out", "{w}/p.txt"],
        "is a file",
        _write("p.txt", "a cat\n"),
    ),
    Case(
        "generate-foreign-folder",
        ["generate", "--prompts", "{w}/p.txt", "--model", "tiny-sd1", "--out", "{w}/mine"],
        "was not written by selma-bench",
        lambda w: (_write("p.txt", "a cat\n")(w), _write("mine/notes.txt", "mine")(w)),
    ),
    # train
    Case(
        "train-truncated-metadata",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--max-train-steps", "1"],
        "metadata.jsonl: line 2: not valid JSON",
        lambda w: _image_folder(w, metadata='{"file_name": "images/a_0.png", "text": "a"}\n{"file_na'),
    ),
    Case(
        "train-empty-metadata",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--max-train-steps", "1"],
        "metadata.jsonl: no images listed",
        lambda w: _image_folder(w, metadata=""),
    ),
    Case(
        "train-not-an-image",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--max-train-steps", "1"],
        "line 2: field 'file_name'",
        lambda w: _image_folder(w, broken="not-an-image"),
    ),
    Case(
        "train-truncated-png",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--max-train-steps", "1"],
        "not a readable image",
        lambda w: _image_folder(w, broken="truncated"),
    ),
    Case(
        "train-path-outside",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--max-train-steps", "1"],
        "points outside",
        lambda w: _image_folder(w, metadata='{"file_name": "../../../../etc/hostname", "text": "a"}\n'),
    ),
    Case("train-rank-0", ["train", "--model", "tiny-sd1", "--data", "d", "--out", "o", "--rank", "0"], "--rank"),
    Case(
        "train-lr-negative",
        ["train", "--model", "tiny-sd1", "--data", "d", "--out", "o", "--learning-rate", "-1"],
        "--learning-rate",
    ),
    Case(
        "train-steps-0",
        ["train", "--model", "tiny-sd1", "--data", "d", "--out", "o", "--max-train-steps", "0"],
        "--max-train-steps",
    ),
    Case(
        "train-resume-missing",
        ["train", "--model", "tiny-sd1", "--data", "{w}/imgs", "--out", "{w}/lora", "--resume", "{w}/nope"],
        "no such checkpoint folder",
        _image_folder,
    ),
    Case(
        "train-no-metadata",
        ["train", "--model", "tiny-sd1", "--data", "{w}", "--out", "{w}/lora"],
        "image folder without metadata.jsonl",
    ),
    # merge
    Case(
        "merge-truncated-safetensors",
        ["merge", "--model", "tiny-sd1", "--experts", "a={w}/lora-trunc", "b={w}/lora-junk", "--out", "{w}/m"],
        "lora-trunc/pytorch_lora_weights.safetensors: not a readable LoRA file",
        _loras,
    ),
    Case(
        "merge-empty-safetensors",
        ["merge", "--model", "tiny-sd1", "--experts", "a={w}/lora-empty", "b={w}/lora-junk", "--out", "{w}/m"],
        "lora-empty/pytorch_lora_weights.safetensors: not a readable LoRA file",
        _loras,
    ),
    Case(
        "merge-junk-safetensors",
        ["merge", "--model", "tiny-sd1", "--experts", "a={w}/lora-junk", "b={w}/lora-junk", "--out", "{w}/m"],
        "not a readable LoRA file",
        _loras,
    ),
    Case("merge-weights-not-numbers", ["merge", "--model", "tiny-sd1", "--weights", "a,b"], "--weights"),
    Case("merge-density-5", ["merge", "--model", "tiny-sd1", "--density", "5"], "--density"),
    Case(
        "merge-missing-expert",
        ["merge", "--model", "tiny-sd1", "--experts", "a={w}/x", "b={w}/y", "--out", "{w}/m"],
        "has no pytorch_lora_weights.safetensors",
    ),
    # datagen
    Case("datagen-negative-n", ["datagen", "--n", "-3", "--out", "p.jsonl"], "--n"),
    Case(
        "datagen-unknown-skill", ["datagen", "--skills", "cooking", "--out", "{w}/p.jsonl"], "unknown skill(s) cooking"
    ),
    Case(
        "datagen-junk-row",
        ["datagen", "--skills", "world_count", "--backend", "world", "--n", "2", "--out", "{w}/p.jsonl"],
        "p.jsonl: line 2: field 'id': missing",
        lambda w: _prompt_file(w, junk=True),
    ),
    Case(
        "datagen-changed-settings",
        ["datagen", "--skills", "world_count", "--backend", "world", "--n", "2", "--out", "{w}/p.jsonl"],
        "made with other settings (seed: 5 -> 0)",
        lambda w: _prompt_file(w, seed=5),
    ),
    Case(
        "datagen-bad-skills-file",
        ["datagen", "--skills-file", "{w}/s.yaml", "--skills", "x", "--out", "{w}/p.jsonl"],
        "skill 'x': field 'seeds'",
        _write("s.yaml", "x:\n  rules: [r]\n  seeds: [a]\n"),
    ),
    # demo, world, study, suites, run
    Case("demo-prompts-0", ["demo", "--prompts-per-skill", "0"], "--prompts-per-skill"),
    Case("demo-steps-0", ["demo", "--max-train-steps", "0"], "--max-train-steps"),
    Case("world-train-steps-0", ["world", "train", "--max-train-steps", "0", "--out", "o"], "--max-train-steps"),
    Case("renamed-steps", ["demo", "--steps", "5"], "--steps was renamed: use --max-train-steps"),
    Case("demo-unknown-recipe", ["demo", "--recipes", "verified,g9", "--out", "{w}/d"], "unknown demo recipe 'g9'"),
    Case(
        "world-train-noise-kind",
        ["world", "train", "--caption-noise", "colour_swapped=0.3", "--out", "{w}/o"],
        "colour_swapped",
    ),
    Case(
        "world-train-noise-skill",
        ["world", "train", "--noise-skills", "binding,colour", "--out", "{w}/o"],
        "unknown world skill 'colour'",
    ),
    Case(
        "world-train-warm-start-sizes",
        ["world", "train", "--arch", "weak", "--init-from", "shapes-base", "--max-train-steps", "1", "--out", "{w}/o"],
        "cannot warm-start from shapes-base",
    ),
    Case("renamed-lr", ["world", "train", "--lr", "0.1", "--out", "o"], "--lr was renamed: use --learning-rate"),
    Case("world-eval-unknown-model", ["world", "eval", "shapes-nope"], "unknown model 'shapes-nope'"),
    Case(
        "study-no-variants",
        ["study", "{w}/s.yaml", "--dry-run"],
        "field 'variants': List should have at least 1 item",
        _write("s.yaml", "name: x\nbase_model: tiny-sd1\nskills: [coco]\nvariants: []\n"),
    ),
    Case(
        "datagen-out-folder",
        ["datagen", "--skills", "world_count", "--backend", "world", "--n", "2", "--out", "{w}/kept"],
        "kept is a folder; the output is a file",
        lambda w: (w / "kept" / "mine").mkdir(parents=True),
    ),
    Case(
        "study-rank-four",
        ["study", "{w}/s.yaml", "--dry-run"],
        "field 'train': rank: Input should be a valid integer",
        _write("s.yaml", STUDY.format(name="x") + "train: {rank: four}\n"),
    ),
    Case(
        "study-unsafe-name",
        ["study", "{w}/s.yaml", "--dry-run"],
        "field 'name': study name '../../../x' is not a safe name",
        _write("s.yaml", STUDY.format(name="../../../x")),
    ),
    Case(
        "study-unknown-vqa",
        ["study", "{w}/s.yaml", "--dry-run"],
        "dsg.vqa: unknown VQA model 'blip3'",
        _write("s.yaml", STUDY.format(name="x") + "checkpoints: {dsg: {vqa: blip3}}\n"),
    ),
    Case(
        "study-mplug-without-port",
        ["study", "{w}/s.yaml", "--dry-run"],
        "no transformers port",
        _write("s.yaml", STUDY.format(name="x") + "checkpoints: {dsg: {vqa: mplug-large}}\n"),
    ),
    Case("study-missing-file", ["study", "{w}/nope.yaml"], "nope.yaml: cannot read the study"),
    Case("suites-show-unknown", ["suites", "show", "nosuch"], "unknown suite 'nosuch'"),
    Case("run-limit-0", ["run", "--suite", "dsg", "--model", "tiny-sd1", "--limit", "0"], "--limit"),
    Case(
        "run-unknown-vqa-before-rendering",
        ["run", "--suite", "dsg", "--model", "tiny-sd1", "--limit", "1", "--vqa", "nosuch", "--out", "{w}/runs"],
        "invalid choice: 'nosuch'",
    ),
    Case(
        "run-unknown-metric-before-rendering",
        ["run", "--suite", "drawbench", "--model", "tiny-sd1", "--metric", "clip", "--out", "{w}/runs"],
        "invalid choice: 'clip'",
    ),
]


def _snapshot(folder: Path) -> dict[str, str]:
    skip = {"cache", "hf-datasets"}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if not (set(p.relative_to(folder).parts) & skip)
    }


def test_the_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "w"
    work.mkdir()
    if case.setup is not None:
        case.setup(work)
    before = _snapshot(work)
    argv = [a.replace("{w}", str(work)) for a in case.argv]
    try:
        code = main([*argv, "--data-dir", str(DATA)] if _takes_data_dir(argv) else argv)
    except SystemExit as exc:  # argument errors (argparse exits)
        code = exc.code
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert code == 2, captured.err
    assert len(errors) == 1 and case.expect in errors[0], captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert _snapshot(work) == before  # nothing written, nothing half-written


def _takes_data_dir(argv: list[str]) -> bool:
    return argv[0] in ("rescore", "meta-eval", "score", "run", "study", "suites", "datagen")


def test_argparse_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "tiny-sd1", "--data", "d", "--out", "o", "--rank", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "selma-bench train: error: argument --rank: expected a positive integer, got '0' (see `selma-bench train -h`)"
    ]


def test_verbose_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "compare", str(tmp_path), str(tmp_path)]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), str(tmp_path), "-v"]) == 2  # -v after the subcommand too
    assert "Traceback" in capsys.readouterr().err


def test_prompt_ids_of_any_script_and_exported_suites_read_as_written(tmp_path: Path) -> None:
    from selma.recipe.prompts import read_prompt_file

    (tmp_path / "p.jsonl").write_text('{"id": "é", "text": "a cat"}\n{"id": "ü", "text": "a dog"}\n')
    assert [p.id for p in read_prompt_file(tmp_path / "p.jsonl")] == ["é", "ü"]
    # `suites export` writes prompt_id: generate keeps those ids, not 0, 1, ...
    assert main(["suites", "export", "drawbench", "--out", str(tmp_path / "d.jsonl"), "--data-dir", str(DATA)]) == 0
    exported = [json.loads(line)["prompt_id"] for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [p.id for p in read_prompt_file(tmp_path / "d.jsonl")] == exported


def test_a_comma_list_starting_with_a_negative_number_is_a_value() -> None:
    from selma.cli import build_parser, join_negative_lists

    words = join_negative_lists(["merge", "--model", "m", "--experts", "a=x", "b=y", "--weights", "-1,2"])
    assert build_parser().parse_args(words).weights == [-1.0, 2.0]
    assert join_negative_lists(["x", "--seed", "-1", "-q"]) == ["x", "--seed", "-1", "-q"]
