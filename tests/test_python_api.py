"""The README's Python API example runs as written (in the shapes world, on a CPU)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import WORLD_STUDY

README = Path(__file__).resolve().parents[1] / "README.md"

STUDY = {**WORLD_STUDY, "name": "api-study", "description": "one expert in the shapes world"}


def readme_example() -> str:
    """The fenced Python block after the ``<!-- python-api -->`` marker."""
    found = re.search(r"<!-- python-api -->\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert found, "README.md lost its Python API example"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-study.yaml").write_text(yaml.safe_dump(STUDY))
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)

    assert re.match(r"DSG \d+\.\d, 95% CI \[[\d.]+, [\d.]+\], per skill \{'count'", capsys.readouterr().out)
    summary, result = namespace["summary"], namespace["result"]
    assert summary.score == result["summaries"][0]["score"]  # score_folder on run_variant's images: the same score
    for skill in ("world_count", "world_spatial"):
        training = json.loads((tmp_path / "api" / "experts" / skill / "training.json").read_text())
        assert training["n_examples"] == 16 and len(training["losses"]) == 10
    merged = namespace["merged"]
    assert isinstance(merged, dict) and merged["method"] == "paper"
    assert merged["experts"] == ["world_count", "world_spatial"] and merged["weights"] == [0.5, 0.5]
    assert (tmp_path / "api" / "merged" / "pytorch_lora_weights.safetensors").is_file()
    rows = json.loads((tmp_path / "api" / "study" / "study.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["base", "expert:world_count"] and all(r["n_prompts"] == 40 for r in rows)
