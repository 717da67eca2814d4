"""Verifier-filtered training data: keep a model's own images that a metric scores at or above a threshold.

DreamSync's recipe: the generated (prompt, image) pairs are scored by a verifier (here any registered
per-image metric: the shapes world's exact ``shapes-dsg``, or ``vqascore`` on real images) and only
the pairs at or above the threshold are trained on. The input is ``generate``'s folder; the output
is an imagefolder (``metadata.jsonl`` + hard-linked images) that ``train`` reads, with every score in
``scores.jsonl``. It is a stage: claimed before any work, keyed by the images' content, the metric,
its checkpoints and the threshold.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.io import content_identity, inside, read_jsonl
from selma.stage import Claim, run_stage

SCORES = "scores.jsonl"


def filter_images(
    source: Path,
    out: Path,
    metric: str,
    threshold: float,
    *,
    checkpoints: dict[str, str] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Keep the images of ``source`` (``metadata.jsonl`` with ``file_name`` and ``text``) whose ``metric``
    score is at least ``threshold`` in the imagefolder ``out``; returns counts and the score range.
    """
    from tqdm.auto import tqdm

    from selma.harness.metrics import all_metrics
    from selma.harness.metrics.images import load_rgb
    from selma.harness.score import checkpoint_identities

    registered = all_metrics().get(metric)
    if registered.info.kind != "image" or registered.build is None:
        raise SelmaError(f"filter: {metric!r} is not a per-image metric (see `selma-bench metrics`)")
    metadata = source / "metadata.jsonl"
    if not metadata.is_file():
        raise SelmaError(f"{source}: no metadata.jsonl (filter reads the folders `generate` writes)")
    rows = read_jsonl(metadata, {"file_name": str, "text": str}, allow_empty=False)
    config = {
        "command": "filter",
        "source": content_identity(source),
        "metric": metric,
        "checkpoints": checkpoint_identities(checkpoints or {}),
        "threshold": threshold,
        "version": __version__,
    }
    paths = [
        inside(source, row["file_name"], path=metadata, row=f"line {row['_line']}", field="file_name") for row in rows
    ]

    def score_and_keep(claimed: Claim, scorer: Any) -> dict[str, Any]:
        scores: list[float] = []
        bar = tqdm(total=len(rows), desc=f"verify {source.name}", unit="img", disable=not progress)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            images = [load_rgb(path) for path in paths[start : start + batch_size]]
            scores.extend(scorer.score(images, [row["text"] for row in chunk]))
            bar.update(len(chunk))
        bar.close()
        kept = [(row, path) for row, path, score in zip(rows, paths, scores, strict=True) if score >= threshold]
        if not kept:
            raise SelmaError(
                f"filter: no image of {source} scores {threshold} or more by {metric} (best {max(scores):.3g}); "
                "lower the threshold"
            )
        _link_kept(out, kept)
        fields = [{k: v for k, v in row.items() if k != "_line"} for row in rows]
        with (out / SCORES).open("w", encoding="utf-8") as handle:
            for row, score in zip(fields, scores, strict=True):
                handle.write(json.dumps({**row, "score": score, "kept": score >= threshold}) + "\n")
        with (out / "metadata.jsonl").open("w", encoding="utf-8") as handle:
            for row, _ in kept:
                handle.write(json.dumps({k: v for k, v in row.items() if k != "_line"}) + "\n")
        return {
            "metric": metric,
            "threshold": threshold,
            "n_images": len(rows),
            "n_kept": len(kept),
            "kept_share": round(len(kept) / len(rows), 4),
            "mean_score": round(sum(scores) / len(scores), 4),
        }

    return run_stage(
        out, "filter", config, lambda: registered.build(checkpoints or {}, device=device), score_and_keep, force=force
    )


def _link_kept(out: Path, kept: list[tuple[dict[str, Any], Path]]) -> None:
    """Hard links (copies across file systems) of the kept images, at their own file names."""
    for row, path in kept:
        target = out / row["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system: copy
            shutil.copyfile(path, target)
