"""The paper's numbers in leaderboards/selma-paper.csv equal those of the reference fact sheet."""

from __future__ import annotations

import csv
import re
from collections import defaultdict

import pytest
from conftest import REPO

REFERENCE = REPO.parent / "shared" / "reference" / "selma-paper.md"
METRICS = ["dsg", "tifa", "pickscore", "imagereward", "hps"]
NUMBER = r"(-?\d+\.\d+)"


@pytest.fixture(scope="module")
def reference() -> str:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not present")
    text = REFERENCE.read_text(encoding="utf-8")
    return text[text.index("## 5. Headline numbers") : text.index("## 6.")].replace("**", "")


def _paper_rows(table: str) -> list[tuple[str, str, list[float | None]]]:
    """(base, method, values in METRICS order) per row of one table, in file order."""
    rows: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    order: list[tuple[str, str, str]] = []
    with (REPO / "leaderboards" / "selma-paper.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["table"] != table:
                continue
            key = (row["base_model"], row["method"], row["training_data"])
            if key not in rows:
                order.append(key)
            rows[key][row["metric"]] = float(row["value"])
    return [(b, m, [rows[(b, m, d)].get(x) for x in METRICS]) for b, m, d in order]


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def test_table1(reference: str) -> None:
    lines = [line for line in _section(reference, "| Base |", "Abstract").splitlines()[2:] if line.startswith("|")]
    expected, base = [], None
    names = {"SD v1.4": "sd-v1-4", "SD v2": "sd-v2", "SDXL": "sdxl-base"}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        base = names.get(cells[0], base)
        expected.append((base, cells[1], [None if c == "–" else float(c) for c in cells[2:]]))
    assert _paper_rows("table1") == expected


def test_table2_table4_and_figure1(reference: str) -> None:
    five = rf"{NUMBER}, {NUMBER}, {NUMBER}, {NUMBER}, {NUMBER}"
    table2 = [[float(x) for x in m] for m in re.findall(five, _section(reference, "Weak-to-strong", "Single LoRA"))]
    assert [values for _, _, values in _paper_rows("table2")] == table2
    table4 = [[float(x) for x in m] for m in re.findall(five, _section(reference, "Single LoRA", "GT vs auto"))]
    assert [values for _, _, values in _paper_rows("table4")] == table4
    triples = re.findall(rf"{NUMBER} / {NUMBER} / {NUMBER}", _section(reference, "GT vs auto", "Not retrieved"))
    measured = [values[0] for _, _, values in _paper_rows("figure1")]
    assert measured == [float(x) for triple in triples for x in triple] + [70.3]
