"""``selma-bench score``: metrics on a folder of images of a suite's prompts (no regeneration).

Images are matched to prompts in any layout of ``selma.harness.layouts``: ``generate``'s folders,
imagefolders with ``metadata.jsonl`` or ``metadata.csv``, GenEval's and T2I-CompBench's outputs, and files
named by prompt id or prompt text. Prompts without an image are a warning and a note in the result.
Per-image metrics (PickScore, HPS, ImageReward, VQAScore) average each prompt's images, then the
prompts. Question-answer metrics (DSG, TIFA) ask a VQA model the suite's questions about the first
image of each prompt and score the answers with the same rules as ``rescore``.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.harness.layouts import ImageSet, find_images
from selma.harness.metrics import all_metrics
from selma.harness.metrics.images import image_sha256, load_rgb
from selma.harness.scoring.conventions import QAConvention, resolve_convention
from selma.harness.suites import DataLocator, Suite, load_suite
from selma.results.schema import MetricSummary, Provenance, ScoreSummary
from selma.results.store import existing_run, make_provenance, now, write_run
from selma.shard import process_state, shard_map
from selma.stage import stage_key
from selma.stats import DEFAULT_RESAMPLES, bootstrap_mean, group_intervals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    """One metric on one folder: what the per-image and the question-answer paths both need."""

    suite: Suite
    images: ImageSet
    prompt_ids: list[str]
    metric: str
    checkpoints: dict[str, str]
    convention: QAConvention | None
    device: str
    seed: int
    n_resamples: int
    label: str
    notes: list[str]
    limited: bool
    provenance: Callable[[], Provenance]
    scratch: Path


def score_folder(
    suite_name: str,
    folder: Path,
    metric: str,
    locator: DataLocator,
    *,
    checkpoints: dict[str, str] | None = None,
    convention: str | None = None,
    device: str = "cpu",
    limit: int | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    label: str | None = None,
    out: Path | None = None,
    force: bool = False,
) -> tuple[ScoreSummary | MetricSummary, Path, bool]:
    """Score the images of ``folder`` with ``metric``: the summary, its run folder, and whether it was reused."""
    started = now()
    suite = load_suite(suite_name, locator)
    images = find_images(folder, suite)
    prompt_ids = [p.id for p in suite.prompts if p.id in images.by_prompt][:limit]
    files = [path for pid in prompt_ids for path in images.by_prompt[pid]]
    inputs = {str(path): image_sha256(path) for path in files}
    registered = all_metrics().get(metric)  # an unknown metric fails before any work
    qa = registered.info.kind == "qa"
    if qa and suite.spec.scoring != metric:
        raise SelmaError(
            f"metric '{metric}' needs a suite with {metric} questions; suite '{suite.name}' has "
            f"{suite.spec.scoring or 'none'}"
        )
    resolved = resolve_convention(metric, convention) if qa else None
    config = {
        "command": "score",
        "suite": suite.name,
        "metric": metric,
        "convention": resolved.name if resolved else None,
        "checkpoints": checkpoints or {},
        "checkpoint_identity": checkpoint_identities(checkpoints or {}),
        "images": sorted(inputs.values()),
        "seed": seed,
        "n_resamples": n_resamples,
        "label": label,
        "version": __version__,
    }
    digest = stage_key("run", config)
    run_dir = out or Path("selma-runs") / f"score-{suite.name}-{metric}-{folder.name}-{digest[:12]}"
    if not force:
        cached = existing_run(run_dir, config)
        if cached is not None:
            return cached, run_dir, True
    notes = list(suite.notes)
    missing = len(suite.prompts) - len(images.by_prompt)
    if missing and limit is None:
        zero = resolved is not None and resolved.missing_prompts == "zero"
        note = f"{missing} of {len(suite.prompts)} prompts of suite '{suite.name}' have no image in {folder}" + (
            ": they score 0 (the convention's rule)"
            if zero
            else f": the score covers the {len(prompt_ids)} prompts with images, not the whole suite"
        )
        log.warning(note)
        notes.append(note)
    if images.unmatched:
        notes.append(f"{len(images.unmatched)} image(s) matched no prompt: {', '.join(images.unmatched[:5])}")

    job = _Job(
        suite=suite,
        images=images,
        prompt_ids=prompt_ids,
        metric=metric,
        checkpoints=checkpoints or {},
        convention=resolved,
        device=device,
        seed=seed,
        n_resamples=n_resamples,
        label=label or f"{folder.name}:{metric}",
        notes=notes,
        limited=limit is not None,
        provenance=lambda: make_provenance(config, inputs, seed=seed, started_at=started),
        scratch=run_dir.with_name(f".{run_dir.name}.shards"),
    )
    summary, records = _score_qa(job) if qa else _score_per_image(job)
    state = process_state()
    if state.is_main_process:
        write_run(run_dir, summary, records)
    state.wait_for_everyone()
    return summary, run_dir, False


def _score_per_image(job: _Job) -> tuple[MetricSummary, dict[str, list[dict[str, Any]]]]:
    suite, images, prompt_ids, metric, checkpoints = job.suite, job.images, job.prompt_ids, job.metric, job.checkpoints
    seed, n_resamples, label, notes = job.seed, job.n_resamples, job.label, job.notes
    device, provenance = job.device, job.provenance
    registered = all_metrics().get(metric)
    try:
        scorer = registered.build(checkpoints, device=device)
    except (OSError, ValueError, KeyError) as exc:  # a missing, foreign or damaged checkpoint
        given = ", ".join(f"{k}={v}" for k, v in checkpoints.items()) or "the defaults"
        raise SelmaError(
            f"cannot load {metric} from {given} ({str(exc).strip().splitlines()[0][:200]}); "
            f"see `selma-bench metrics` for its checkpoint roles"
        ) from None
    text = {p.id: p.text for p in suite.prompts}
    category = {p.id: p.category for p in suite.prompts}
    pairs = [(pid, path) for pid in prompt_ids for path in images.by_prompt[pid]]

    def score_chunk(chunk: Sequence[tuple[str, Path]]) -> list[float]:
        return scorer.score([load_rgb(path) for _, path in chunk], [text[pid] for pid, _ in chunk])

    values = shard_map(pairs, getattr(scorer, "batch_size", 8), score_chunk, job.scratch)
    notes.extend(getattr(scorer, "notes", []))
    image_records = [
        {"prompt_id": pid, "file": str(path.resolve()), "score": value}
        for (pid, path), value in zip(pairs, values, strict=True)
    ]
    per_prompt: dict[str, list[float]] = defaultdict(list)
    for record in image_records:
        per_prompt[record["prompt_id"]].append(record["score"])
    prompt_records = [
        {
            "prompt_id": pid,
            "text": text[pid],
            "category": category[pid],
            "answered": True,
            "n_images": len(per_prompt[pid]),
            "score": statistics.fmean(per_prompt[pid]),
        }
        for pid in prompt_ids
    ]
    scores = [r["score"] for r in prompt_records]
    overall = bootstrap_mean(scores, seed=seed, n_resamples=n_resamples)
    by_category = group_intervals(prompt_records, "category", "score", seed=seed, n_resamples=n_resamples)
    summary = MetricSummary(
        suite=suite.name,
        metric=metric,
        label=label,
        convention=registered.info.convention,
        checkpoints={**registered.info.checkpoints, **checkpoints},
        score=overall.mean,
        stdev=statistics.stdev(scores) if len(scores) > 1 else 0.0,
        ci={"score": overall.as_list()},
        by_category={k: v.mean for k, v in by_category.items()},
        by_category_ci={k: v.as_list() for k, v in by_category.items()},
        n_prompts=len(prompt_records),
        n_images=len(image_records),
        notes=notes,
        records={"prompts": "prompts.jsonl", "images": "images.jsonl"},
        provenance=provenance(),
    )
    return summary, {"prompts.jsonl": prompt_records, "images.jsonl": image_records}


def _score_qa(job: _Job) -> tuple[ScoreSummary, dict[str, list[dict[str, Any]]]]:
    suite, images, prompt_ids, checkpoints = job.suite, job.images, job.prompt_ids, job.checkpoints
    seed, n_resamples, label, notes = job.seed, job.n_resamples, job.label, job.notes
    device, provenance, limited = job.device, job.provenance, job.limited
    from selma.harness.metrics.answerer_choice import answerer_choice
    from selma.harness.metrics.vqa import AnswerCache, make_answerer
    from selma.harness.rescore import summarize
    from selma.harness.scoring.matchers import make_matcher
    from selma.harness.scoring.qa import score_questions
    from selma.io import default_cache_dir

    if not suite.questions:
        raise SelmaError(f"suite '{suite.name}' has no questions on disk; see `selma-bench suites show {suite.name}`")
    convention = job.convention
    assert convention is not None
    choice = answerer_choice(checkpoints, suite, convention)
    spec = choice.spec
    cache = AnswerCache(default_cache_dir() / "vqa-answers.sqlite")
    vqa = make_answerer(spec, choice.model, device=device, cache=cache)
    first = {pid: images.by_prompt[pid][0] for pid in prompt_ids}
    questions = [q for q in suite.questions if q.prompt_id in first]
    shas = {pid: image_sha256(path) for pid, path in first.items()}
    loaded = {pid: load_rgb(path) for pid, path in first.items()}
    multiple_choice = all_metrics().get(convention.metric).info.show_choices

    def answer_chunk(chunk: Sequence[Any]) -> list[str]:
        return vqa.answer(
            [loaded[q.prompt_id] for q in chunk],
            [q.text for q in chunk],
            [shas[q.prompt_id] for q in chunk],
            [q.choices if multiple_choice else None for q in chunk],
        )

    answers = shard_map(questions, vqa.batch_size, answer_chunk, job.scratch)
    answered = {(q.prompt_id, q.id): a for q, a in zip(questions, answers, strict=True)}
    # Every suite prompt counts (one without an image scores 0 under DSG's rule) unless --limit chose some.
    chosen = [p for p in suite.prompts if p.id in first or (not limited and convention.missing_prompts == "zero")]
    matcher_model = checkpoints.get("matcher") if convention.matcher == "sbert" else None
    scored = score_questions(chosen, questions, answered, make_matcher(convention.matcher, matcher_model), convention)
    notes.append(f"answered by {spec.name} ({vqa.checkpoint}); one image per prompt (the first)")
    summary = summarize(
        scored.prompts,
        scored.questions,
        suite=suite.name,
        convention=convention,
        t2i_model=None,
        label=label,
        seed=seed,
        n_resamples=n_resamples,
        notes=notes,
        n_blank=0,
        provenance=provenance(),
    )
    summary = summary.model_copy(update={"kind": "score"})
    for record in scored.prompts:  # the image each prompt was judged on (reports show it)
        if record["prompt_id"] in first:
            record["file"] = str(first[record["prompt_id"]].resolve())
    return summary, {"prompts.jsonl": scored.prompts, "questions.jsonl": scored.questions}


def checkpoint_identities(checkpoints: dict[str, str]) -> dict[str, str]:
    """Each checkpoint role's content identity: replacing the weights at a path gives new scores."""
    from selma.io import content_identity

    return {role: content_identity(value) for role, value in sorted(checkpoints.items())}
