"""An identical re-run of a study is a cache hit: first-run and re-run times of the CI study, in one run.

    python benchmarks/study_rerun.py

Runs `reports/ci/make_report.py` into a temporary folder (tiny-sd1, 8 variants, DrawBench's first
8 prompts, PickScore on a tiny CLIP): it times the first run and an identical second run and
prints both with their ratio. The re-run renders, trains and scores nothing; what remains is
process start-up, imports and hashing the inputs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    script = Path(__file__).resolve().parents[1] / "reports" / "ci" / "make_report.py"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(script), "--out", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print((Path(tmp) / "timing.md").read_text(encoding="utf-8").strip())


if __name__ == "__main__":
    main()
