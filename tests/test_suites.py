from __future__ import annotations

import http.server
import logging
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATA

from selma.errors import DataInputError, DataNotFoundError, SelmaError
from selma.harness.suites import DataLocator, add_suites_file, load_suite, suite_registry
from selma.harness.suites.spec import parse_suite_specs

EXPECTED = {
    "dsg": (1060, 8182),
    "tifa160": (160, 929),
    "tifa": (4081, 0),
    "partiprompts": (1632, 0),
    "drawbench": (200, 0),
    "t2i-compbench": (2400, 0),
    "geneval": (553, 0),
    "imagereward-bench": (100, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_suite_loads_with_its_published_size(name: str, locator: DataLocator) -> None:
    suite = load_suite(name, locator)
    assert (len(suite.prompts), len(suite.questions)) == EXPECTED[name]
    assert len({p.id for p in suite.prompts}) == len(suite.prompts)
    assert suite.spec.n_prompts == len(suite.prompts)


def test_dsg_categories_follow_the_readme_map(locator: DataLocator) -> None:
    suite = load_suite("dsg", locator)
    counts = Counter(p.category for p in suite.prompts)
    assert counts == {
        "tifa": 160,
        "paragraph": 200,
        "relation": 100,
        "count": 100,
        "real_user": 200,
        "pose": 100,
        "defying": 100,
        "text": 100,
    }
    # the official question category comes from the tuple ('other' -> attribute; 20 rows differ from category_broad)
    types = Counter(q.element_type for q in suite.questions)
    assert types == {"entity": 3395 + 5, "relation": 2056 + 2, "attribute": 1945 + 293 + 13, "global": 473}


def test_t2i_compbench_has_eight_categories_of_300(locator: DataLocator) -> None:
    suite = load_suite("t2i-compbench", locator)
    assert Counter(p.category for p in suite.prompts) == {
        c: 300 for c in ["color", "shape", "texture", "spatial", "3d_spatial", "numeracy", "non_spatial", "complex"]
    }


def test_drawbench_category_labels_are_stripped(locator: DataLocator) -> None:
    categories = load_suite("drawbench", locator).categories()
    assert "Gary Marcus et al." in categories and len(categories) == 11


def test_non_numeric_dependencies_drop_the_prompts_dependencies_as_the_official_loader(
    locator: DataLocator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        suite = load_suite("dsg", locator)
    by_prompt: dict[str, list] = {}
    for q in suite.questions:
        by_prompt.setdefault(q.prompt_id, []).append(q)
    dropped = [
        "posescript_19",
        "posescript_41",
        "posescript_55",
        "posescript_69",
        "stanford_paragraph_54",
        "stanford_paragraph_55",
        "stanford_paragraph_72",
        "tifa160_67",
    ]
    for item in dropped:  # every question of the prompt, not only the row with text
        assert all(q.parents == () for q in by_prompt[item])
        assert any(
            q.dependency and not q.dependency.replace(",", "").replace(" ", "").isdigit() for q in by_prompt[item]
        )
    q8 = next(q for q in by_prompt["posescript_19"] if q.id == "8")
    assert q8.dependency == "3, air" and q8.detailed_type  # the raw cell, for SELMA's scorer
    assert next(q for q in by_prompt["tifa160_0"] if q.id == "4").parents == ("1", "2")
    dependency_warnings = [r for r in caplog.records if "non-numeric dependency" in r.getMessage()]
    assert len(dependency_warnings) == 1
    assert all(item in dependency_warnings[0].getMessage() for item in dropped)
    assert suite.notes and "8 prompt(s)" in suite.notes[0]


def test_tifa160_records_tifa_source_ids(locator: DataLocator) -> None:
    suite = load_suite("tifa160", locator)
    assert Counter(p.category for p in suite.prompts) == {
        "coco": 84,
        "partiprompt": 51,
        "paintskill": 15,
        "drawbench": 10,
    }
    assert all(str(p.meta["source_id"]).startswith(p.category) for p in suite.prompts)


def test_tifa_question_file_from_a_user_given_path(locator: DataLocator) -> None:
    custom = DataLocator.from_env(
        DATA, offline=True, overrides={"questions": DATA / "tifa/sample_question_answers.json"}
    )
    suite = load_suite("tifa", custom, need=["questions"])
    assert len(suite.questions) == 19
    counting = [q for q in suite.questions if q.element_type == "counting"]
    assert {q.answer for q in counting} == {"3", "yes", "2"}


def test_offline_without_data_names_the_file_and_both_options(tmp_path: Path) -> None:
    empty = DataLocator.from_env(tmp_path / "nothing", offline=True)
    with pytest.raises(DataNotFoundError) as info:
        load_suite("tifa", empty, need=["questions"])
    message = str(info.value)
    assert "tifa/tifa_v1.0_text_inputs.json" in message
    assert "--data-dir" in message and "SELMA_BENCH_DATA" in message
    assert "raw.githubusercontent.com/Yushi-Hu/tifa" in message and "download" in message


def test_checksum_mismatch_is_refused(data_copy: Path) -> None:
    path = data_copy / "dsg" / "dsg-1k-anns.csv"
    path.write_bytes(path.read_bytes().replace(b"rubix", b"rubik", 1))
    with pytest.raises(SelmaError, match="differs from the pinned"):
        load_suite("dsg", DataLocator.from_env(data_copy, offline=True))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A loopback HTTP server serving a copy of the data directory, set as the download mirror."""
    root = tmp_path / "served"
    shutil.copytree(DATA / "imagereward", root / "imagereward")
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SELMA_BENCH_MIRROR", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("SELMA_BENCH_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    yield root
    server.shutdown()


def test_download_once_into_the_cache(mirror: Path, tmp_path: Path) -> None:
    locator = DataLocator.from_env(tmp_path / "nothing")
    suite = load_suite("imagereward-bench", locator)
    assert len(suite.prompts) == 100
    cached = tmp_path / "cache" / "imagereward" / "benchmark-prompts.json"
    assert cached.is_file() and suite.files["prompts"] == cached
    (mirror / "imagereward" / "benchmark-prompts.json").unlink()
    assert len(load_suite("imagereward-bench", locator).prompts) == 100  # served from the cache now


def test_download_with_wrong_checksum_keeps_nothing(mirror: Path, tmp_path: Path) -> None:
    (mirror / "imagereward" / "benchmark-prompts.json").write_text("[]")
    with pytest.raises(SelmaError, match="does not match the pinned sha256"):
        load_suite("imagereward-bench", DataLocator.from_env(tmp_path / "nothing"))
    assert not any((tmp_path / "cache").rglob("*.json"))


def test_user_suites_file_registers_a_suite(tmp_path: Path, locator: DataLocator) -> None:
    prompts = tmp_path / "mine.txt"
    prompts.write_text("a red cube\n\na blue ball\n")
    yaml_file = tmp_path / "suites.yaml"
    yaml_file.write_text(
        f"my-prompts:\n  title: Mine\n  description: two prompts\n  source: me\n  license: CC0\n"
        f"  format: lines\n  files:\n    toys:\n      path: {prompts}\n"
    )
    try:
        assert add_suites_file(yaml_file) == ["my-prompts"]
        suite = load_suite("my-prompts", locator)
        assert [(p.id, p.text, p.category) for p in suite.prompts] == [
            ("toys_000", "a red cube", "toys"),
            ("toys_001", "a blue ball", "toys"),
        ]
    finally:
        suite_registry.cache_clear()


VALID = "x:\n  title: t\n  description: d\n  source: s\n  license: l\n  format: f\n  files: {a: {path: p}}\n"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("x:\n  title: t\n", "description"),
        ("x:\n  title: t\n  description: d\n  source: s\n  license: l\n  format: lines\n  files: {}\n", "files"),
        (f"{VALID}  colour: 1\n", "colour"),
        (f"{VALID}  n_prompts: many\n", "n_prompts"),
    ],
)
def test_bad_suite_yaml_names_file_and_key(tmp_path: Path, body: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(DataInputError) as info:
        parse_suite_specs(path)
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value) and "suite 'x'" in str(info.value)


def test_a_user_suites_file_of_a_plugin_format_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """A generated format registered by a plugin (the world's) is known before any registry lookup."""
    import subprocess
    import sys

    suites = tmp_path / "mine.yaml"
    suites.write_text(
        "my-shapes:\n  title: t\n  description: d\n  source: s\n  license: l\n  format: shapes_world\n"
        "  files: {}\n  options: {per_skill: 2, seed: 5}\n"
    )
    code = (
        "from selma.harness.suites import add_suites_file, load_suite, DataLocator; "
        f"add_suites_file({str(suites)!r}); print(len(load_suite('my-shapes', DataLocator()).prompts))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"
