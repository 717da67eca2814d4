"""The ``selma-bench`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import traceback
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from selma import __version__
from selma.errors import SelmaError

log = logging.getLogger("selma")


def positive_int(value: str) -> int:
    """An integer of at least 1 (argparse type)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    """An integer of at least 0 (argparse type)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0, got {value!r}")
    return number


def _float(value: str, what: str, ok: Any) -> float:
    import math

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if not math.isfinite(number) or not ok(number):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """A finite number above 0 (argparse type)."""
    return _float(value, "a number above 0", lambda x: x > 0)


def non_negative_float(value: str) -> float:
    """A finite number of at least 0 (argparse type)."""
    return _float(value, "a number of at least 0", lambda x: x >= 0)


def unit_interval(value: str) -> float:
    """A number in (0, 1] (argparse type)."""
    return _float(value, "a number in (0, 1]", lambda x: 0 < x <= 1)


def resolution(value: str) -> int:
    """A positive multiple of 8 (argparse type): Stable Diffusion's latents are 1/8 of the image."""
    number = positive_int(value)
    if number % 8:
        raise argparse.ArgumentTypeError(f"expected a multiple of 8, got {value!r}")
    return number


def float_list(value: str) -> list[float]:
    """Comma-separated finite numbers (argparse type)."""
    return [_float(part.strip(), "comma-separated numbers", lambda x: True) for part in value.split(",")]


def caption_noise(value: str) -> Any:
    """``name=probability,...`` for the world's :class:`CaptionNoise` (argparse type)."""
    from dataclasses import fields

    from selma.world.scenes import CaptionNoise

    known = {f.name for f in fields(CaptionNoise)}
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, number = part.partition("=")
        if not sep or name not in known:
            raise argparse.ArgumentTypeError(
                f"expected NAME=P with NAME one of {', '.join(sorted(known))}, got {part!r}"
            )
        rates[name] = _float(number, "a probability in [0, 1]", lambda x: 0 <= x <= 1)
    return CaptionNoise(**rates)


def _role_path(value: str) -> tuple[str, Path]:
    role, sep, path = value.partition("=")
    if not sep or not role or not path:
        raise argparse.ArgumentTypeError(
            f"expected ROLE=PATH (e.g. questions=tifa_v1.0_question_answers.json), got {value!r}"
        )
    return role, Path(path)


def _data_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("data")
    group.add_argument(
        "--data-dir", type=Path, help="folder holding suite files (default: $SELMA_BENCH_DATA, then the cache)"
    )
    group.add_argument(
        "--offline", action="store_true", help="never download (also $SELMA_BENCH_OFFLINE, $HF_HUB_OFFLINE)"
    )
    group.add_argument(
        "--file",
        type=_role_path,
        action="append",
        default=[],
        metavar="ROLE=PATH",
        help="use PATH for a suite file role",
    )
    group.add_argument("--suites-file", type=Path, help="a YAML file of extra suite definitions")
    return parent


def _locator(args: argparse.Namespace) -> Any:
    from selma.suites import DataLocator, add_suites_file

    if args.suites_file:
        add_suites_file(args.suites_file)
    return DataLocator.from_env(args.data_dir, offline=args.offline, overrides=dict(args.file))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _table(rows: list[list[Any]], header: list[str], floatfmt: str | tuple[str, ...] = ".1f") -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=header, floatfmt=floatfmt)


def cmd_suites(args: argparse.Namespace) -> int:
    """List suites, or describe one."""
    from selma.suites import file_status, load_suite, suite_registry

    locator = _locator(args)
    registry = suite_registry()
    if args.name is None:
        rows = []
        for name in registry:
            spec = registry.get(name)
            status = file_status(spec, locator)
            missing = [s["path"] for s in status if s["required"] and s["found_at"] is None]
            rows.append([name, spec.title, spec.n_prompts, spec.scoring or "-", "missing" if missing else "found"])
        if args.json:
            _print_json([dict(zip(["name", "title", "prompts", "scoring", "data"], r, strict=True)) for r in rows])
        else:
            print(_table(rows, ["suite", "title", "prompts", "scoring", "data"]))
        return 0
    spec = registry.get(args.name)
    status = file_status(spec, locator)
    info: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "source": spec.source,
        "license": spec.license,
        "citation": spec.citation,
        "scoring": spec.scoring,
        "declared": {"prompts": spec.n_prompts, "questions": spec.n_questions},
        "files": status,
    }
    if all(s["found_at"] for s in status if s["required"]):
        suite = load_suite(spec.name, locator)
        info["size"] = {"prompts": len(suite.prompts), "questions": len(suite.questions)}
        info["categories"] = dict(Counter(p.category for p in suite.prompts if p.category is not None))
        info["notes"] = list(suite.notes)
    if args.json:
        _print_json(info)
        return 0
    print(f"{spec.name}: {spec.title}\n")
    print(spec.description + "\n")
    for key in ("source", "license", "citation", "scoring"):
        print(f"{key:>10}: {info[key]}")
    if "size" in info:
        questions = info["size"]["questions"] or "- (question file not on disk)"
        print(f"{'size':>10}: {info['size']['prompts']} prompts, {questions} questions")
        cats = ", ".join(f"{k} {v}" for k, v in info["categories"].items())
        print(f"{'categories':>10}: {cats or '-'}")
    print("\nfiles:")
    for s in status:
        print(f"  {s['role']}: {s['path']} ({s['size'] or '?'} B, sha256 {s['sha256'] or 'not pinned'})")
        print(f"    {s['status']}")
    for note in info.get("notes", []):
        print(f"note: {note}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    """Score recorded VQA answers with a suite's rules."""
    from selma.rescore import RescoreRequest, rescore

    request = RescoreRequest(
        suite=args.suite,
        answers=args.answers,
        answers_format=args.answers_format,
        t2i_model=args.t2i_model,
        convention=args.convention,
        matcher=args.matcher,
        matcher_model=args.matcher_model,
        strict=args.strict,
        seed=args.seed,
        n_resamples=args.bootstrap,
        label=args.label,
    )
    result = rescore(request, _locator(args), out=args.out, force=args.force)
    summary = result.summary
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        low, high = summary.ci["score"]
        print(f"{summary.label} on {summary.suite} (convention {summary.convention}): {summary.n_prompts} prompts")
        print(f"  score {summary.score:.2f}  [95% CI {low:.2f}, {high:.2f}]")
        if summary.metric == "dsg":
            no_dep, macro, micro = summary.score_no_dependency, summary.macro, summary.micro
            print(f"  without dependency rule {no_dep:.2f}   per prompt {macro:.2f}   per question {micro:.2f}")
        rows = [[k, v, *summary.by_category_ci[k]] for k, v in summary.by_category.items()]
        print(_table(rows, ["category", "score", "ci low", "ci high"]))
    print(f"{'reused' if result.cached else 'wrote'} {result.run_dir}", file=sys.stderr)
    return 0


def cmd_meta_eval(args: argparse.Namespace) -> int:
    """Agreement of VQA-based scores with human ratings on TIFA-160."""
    from selma.io import sha256_file
    from selma.metaeval import MetaEvalSummary, meta_evaluate
    from selma.results.store import make_provenance, now, write_run
    from selma.suites import load_suite
    from selma.suites.loaders import read_tifa_questions

    started = now()
    locator = _locator(args)
    suite = load_suite("tifa160", locator)
    tifa_questions = read_tifa_questions(args.tifa_questions) if args.tifa_questions else None
    results, records, notes = meta_evaluate(args.likert, args.answers, suite, tifa_questions)
    inputs = {str(p): sha256_file(p) for p in [args.likert, *sorted(args.answers.glob("*.csv")), *suite.files.values()]}
    if args.tifa_questions:
        inputs[str(args.tifa_questions)] = sha256_file(args.tifa_questions)
    config = {
        "command": "meta-eval",
        "likert": str(args.likert),
        "answers": str(args.answers),
        "tifa_questions": str(args.tifa_questions) if args.tifa_questions else None,
        "reference": "j-min/DSG @ 7330119 scripts/tifa160_correlation.py",
        "version": __version__,
    }
    summary = MetaEvalSummary(
        n_images=len({(r["t2i_model"], r["item_id"]) for r in records}),
        t2i_models=sorted({r["t2i_model"] for r in records}),
        results=results,
        notes=list(suite.notes) + notes,
        provenance=make_provenance(config, inputs, seed=0, started_at=started),
    )
    if args.out:
        write_run(args.out, summary, {"images.jsonl": records})
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        rows = [[k, r.spearman, r.kendall, r.n, r.tifa_gold or ""] for k, r in results.items()]
        print(_table(rows, ["vqa/questions", "spearman", "kendall tau-b", "n", "TIFA gold answers"], ".3f"))
        for note in notes:
            print(f"note: {note}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Paired-bootstrap difference between two runs."""
    from selma.compare import compare_runs

    result = compare_runs(args.run_a, args.run_b, seed=args.seed, n_resamples=args.bootstrap)
    if args.json:
        _print_json(result)
        return 0
    a, b, d = result["a"], result["b"], result["difference"]
    print(f"{result['suite']} ({result['metric']}): B − A over {d['n']} prompts, paired bootstrap")
    print(f"  A {a['label']}: {a['score']:.1f}\n  B {b['label']}: {b['score']:.1f}")
    rows = [["all", d["delta"], *d["ci"], d["p_value"]]]
    rows += [[k, v["delta"], *v["ci"], v["p_value"]] for k, v in result["by_category"].items()]
    print(_table(rows, ["category", "B − A", "ci low", "ci high", "p"], ("", ".1f", ".1f", ".1f", ".3f")))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Tables and a figure from run directories."""
    from selma.report import write_report

    if args.paper:
        from selma.report import paper_table

        if not args.model:
            raise SelmaError("--paper needs --model (the base model of the paper's rows, e.g. sd-v2)")
        table = paper_table(args.runs, args.paper, args.model)
        args.out.mkdir(parents=True, exist_ok=True)
        text = f"# measured beside the paper's {args.paper} ({args.model})\n\n{table.to_markdown(index=False)}\n"
        (args.out / "paper.md").write_text(text, encoding="utf-8")
        table.to_csv(args.out / "paper.csv", index=False)
        print(text)
        return 0
    written = write_report(args.runs, args.out)
    print((written["table.md"]).read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the model registry."""
    from dataclasses import asdict

    from selma.models import model_registry

    specs = [model_registry().get(name) for name in model_registry()]
    if args.json:
        _print_json([asdict(s) for s in specs])
        return 0
    rows = [
        [
            s.name,
            s.hub_id or (f"packaged ({s.packaged})" if s.packaged else "(built offline, random weights)"),
            s.family,
            s.resolution,
            s.prediction_type,
            s.steps,
            s.guidance_scale,
        ]
        for s in specs
    ]
    print(_table(rows, ["model", "source", "family", "px", "prediction", "steps", "cfg"]))
    print("Any local diffusers pipeline directory works too.")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Render images for a prompt file."""
    from selma.generate import GenerationSettings, generate
    from selma.prompts import read_prompt_file
    from selma.variants import resolve_variant

    prompts = read_prompt_file(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    variant = resolve_variant(args.model, args.variant, workdir=args.workdir)
    settings = GenerationSettings.for_variant(
        variant,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        resolution=args.resolution,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        dtype=args.dtype,
    )
    device = args.device
    if device == "cuda":  # one GPU per process under `accelerate launch`
        from accelerate import PartialState

        device = f"cuda:{PartialState().local_process_index}"
    result = generate(
        prompts,
        settings,
        args.out,
        lambda: variant.load(device=device, dtype=args.dtype),
        batch_size=args.batch_size,
        prompt_file=args.prompts,
        force=args.force,
    )
    print(f"{result['rendered']} rendered, {result['skipped']} already present, {result['total']} in {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one LoRA (an expert, the multi-skill baseline, a GT or weak-to-strong LoRA)."""
    from selma.models import resolve_model
    from selma.train import TrainConfig, train_lora
    from selma.variants import variant_dir

    model = resolve_model(args.model)
    if (args.out is None) == (args.as_variant is None):
        raise SelmaError("give exactly one of --out DIR and --as VARIANT")
    out = args.out or variant_dir(args.workdir, model, args.as_variant)
    if out is None:
        raise SelmaError("--as base names no LoRA")
    config = TrainConfig(
        rank=args.rank,
        alpha=args.alpha,
        learning_rate=args.learning_rate,
        # the paper's effective batch: SD 16 x 4 = 64; SDXL 4 x 8 = 32 (ft_sd_lora_sdxl.sh)
        train_batch_size=args.batch_size or (4 if model.spec.family == "sdxl" else 16),
        gradient_accumulation_steps=args.gradient_accumulation_steps or (8 if model.spec.family == "sdxl" else 4),
        max_train_steps=args.steps or (10000 if model.spec.family == "sdxl" else 5000),
        resolution=args.resolution,
        vae=args.vae,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        checkpointing_steps=args.checkpointing_steps,
        checkpoints_total_limit=args.checkpoints_total_limit,
        cache=args.cache,
        image_column=args.image_column,
        caption_column=args.caption_column,
        limit=args.limit,
    )
    result = train_lora(
        model, [str(d) for d in args.data], out, config, resume=args.resume, device=args.device, force=args.force
    )
    if result:
        print(
            f"{out}: {result['steps']} steps on {result['n_examples']} examples; last loss {result['losses'][-1]:.4f}"
        )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge expert LoRAs."""
    from selma.merge import merge_experts
    from selma.models import resolve_model
    from selma.variants import model_root, variant_dir

    model = resolve_model(args.model)
    if args.experts:
        experts = dict(args.experts)
    else:
        found = sorted(p for p in (model_root(args.workdir, model) / "experts").glob("*") if p.is_dir())
        experts = {p.name: p for p in found}
    out = args.out or variant_dir(args.workdir, model, f"merged:{args.method}")
    weights = args.weights
    result = merge_experts(
        model,
        experts,
        out,
        method=args.method,
        weights=weights,
        density=args.density,
        seed=args.seed,
        svd_rank=args.svd_rank,
        fused_pipeline=args.fused_pipeline,
        force=args.force,
    )
    print(f"{out}: {result['method']} merge of {', '.join(result['experts'])} at weights {result['weights']}")
    return 0


def cmd_datagen(args: argparse.Namespace) -> int:
    """Write skill prompts with an LLM."""
    from selma.datagen.backends import backends
    from selma.datagen.run import generate_prompts
    from selma.datagen.skills import SELMA_SKILLS, resolve_skills

    names = args.skills.split(",") if args.skills else list(SELMA_SKILLS)
    skills = resolve_skills(names, _locator(args), args.skills_file)
    if args.backend in ("offline", "world"):
        backend = backends.get(args.backend)()
    elif args.backend == "transformers":
        if not args.llm:
            raise SelmaError("--backend transformers needs --llm PATH_OR_HUB_ID")
        backend = backends.get("transformers")(args.llm, max_new_tokens=args.max_tokens, device=args.device)
    else:
        if not args.llm:
            raise SelmaError("--backend openai needs --llm MODEL_NAME (and --base-url for a local server)")
        backend = backends.get("openai")(
            args.llm, base_url=args.base_url, chat=not args.completions, max_tokens=args.max_tokens
        )
    counts = generate_prompts(skills, args.n, backend, args.out, seed=args.seed, force=args.force)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the SELMA study in the shapes world."""
    from dataclasses import replace

    from selma.demo import DemoConfig, run_demo

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs ships with the package
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    config = DemoConfig()
    sizes = {
        "train_steps": args.steps,
        "prompts_per_skill": args.prompts_per_skill,
        "train_images_per_prompt": args.train_images,
        "seed": args.seed,
        "suite": args.suite,
    }
    config = replace(config, **{k: v for k, v in sizes.items() if v is not None})
    result = run_demo(args.out, config, progress=not args.quiet)
    print(Path(result["reports"]["per_skill.md"]).read_text(encoding="utf-8"))
    print(f"stage timings (s): {result['timings_s']}")
    print(f"wrote {args.out / 'reports'}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """List the scorers with their conventions, references and default checkpoints."""
    from selma.metrics import all_metrics
    from selma.metrics.vqa import NO_TRANSFORMERS_PORT, vqa_models
    from selma.scoring.conventions import conventions

    metrics = all_metrics()
    entries = [metrics.get(name).info for name in metrics]
    qa = [conventions.get(name) for name in conventions]
    if args.json:
        from dataclasses import asdict

        _print_json(
            {
                "metrics": [asdict(i) for i in entries],
                "qa_conventions": [asdict(c) for c in qa],
                "vqa_models": [asdict(vqa_models.get(n)) for n in vqa_models],
                "no_transformers_port": NO_TRANSFORMERS_PORT,
            }
        )
        return 0
    for info in entries:
        print(f"{info.name}: {info.display_name}\n  {info.convention}")
        print(f"  reference: {info.reference}")
        print("  checkpoints: " + ", ".join(f"{k}={v}" for k, v in info.checkpoints.items()))
        if info.notes:
            print(f"  note: {info.notes}")
    print("\ndsg, tifa: the suite's questions answered by a VQA model, scored by a convention (--convention NAME)")
    for convention in qa:
        default = " [default]" if convention.official else ""
        print(f"{convention.name}{default}: {convention.title}")
        print(f"  reference: {convention.reference}")
        print(f"  answers by: {convention.vqa}; answer mapping: {convention.matcher}")
        if convention.notes:
            print(f"  note: {convention.notes}")
    print("\nVQA models (--checkpoint vqa=NAME, model=PATH):")
    for name in vqa_models:
        spec = vqa_models.get(name)
        print(f"  {name}: {spec.checkpoint or '(built in)'}" + (f"; {spec.notes}" if spec.notes else ""))
    for name, why in NO_TRANSFORMERS_PORT.items():
        print(f"not available: {name}: {why}")
    return 0


def _checkpoints(values: list[str], metric: str) -> dict[str, str]:
    found = {}
    for value in values:
        scope, _, assignment = value.rpartition(":") if ":" in value.split("=", 1)[0] else ("", "", value)
        role, sep, path = assignment.partition("=")
        if not sep:
            raise SelmaError(f"--checkpoint expects [METRIC:]ROLE=PATH, got {value!r}")
        if scope in ("", metric):
            found[role] = path
    return found


def cmd_score(args: argparse.Namespace) -> int:
    """Score a folder of images with one or more metrics."""
    from selma.score import score_folder

    locator = _locator(args)
    results = []
    for metric in args.metric:
        out = args.out / metric if args.out and len(args.metric) > 1 else args.out
        summary, run_dir, cached = score_folder(
            args.suite,
            args.images,
            metric,
            locator,
            checkpoints=_checkpoints(args.checkpoint, metric),
            convention=args.convention if metric in ("dsg", "tifa") else None,
            device=args.device,
            limit=args.limit,
            seed=args.seed,
            label=args.label,
            out=out,
            force=args.force,
        )
        results.append(summary)
        print(f"{'reused' if cached else 'wrote'} {run_dir}", file=sys.stderr)
    if args.json:
        _print_json([json.loads(s.model_dump_json()) for s in results])
    else:
        rows = [[s.metric, s.score, *s.ci["score"], s.n_prompts] for s in results]
        print(_table(rows, ["metric", "score", "ci low", "ci high", "prompts"], ("", ".3f", ".3f", ".3f", "")))
    return 0


def _conventions_by_metric(names: list[str] | None) -> dict[str, str]:
    from selma.scoring.conventions import conventions

    return {conventions.get(name).metric: name for name in names or []}


def cmd_run(args: argparse.Namespace) -> int:
    """Generate (cached), score (cached) and tabulate one variant on one suite."""
    from dataclasses import asdict

    from selma.run import RunRequest, plan_run, run

    metrics = tuple(args.metric or ())
    checkpoints = {m: _checkpoints(args.checkpoint, m) for m in metrics or ("dsg", "tifa")}
    for metric in ("dsg", "tifa"):
        if args.vqa:
            checkpoints.setdefault(metric, {})["vqa"] = args.vqa
        if args.vqa_model:
            checkpoints.setdefault(metric, {})["model"] = args.vqa_model
    request = RunRequest(
        suite=args.suite,
        model=args.model,
        variant=args.variant,
        metrics=metrics,
        checkpoints={k: v for k, v in checkpoints.items() if v},
        conventions=_conventions_by_metric(args.convention),
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        limit=args.limit,
        device=args.device,
        batch_size=args.batch_size,
    )
    locator = _locator(args)
    if args.dry_run:
        planned = plan_run(request, locator, workdir=args.workdir, out_root=args.out)
        if args.json:
            _print_json(asdict(planned))
            return 0
        print(
            f"{planned.model} / {planned.variant} on {planned.suite}: {planned.n_prompts} prompts, "
            f"{planned.n_images} images ({planned.images_cached} already rendered) in {planned.images_dir}"
        )
        for metric, info in planned.metrics.items():
            state = "cached" if info["cached"] else f"{info['model_calls']} model calls"
            print(f"  {metric}: {state}")
        print(f"estimated time on {args.device}: about {planned.estimate_s:.0f} s (rough)")
        return 0
    result = run(request, locator, workdir=args.workdir, out_root=args.out)
    if args.json:
        _print_json(result)
    else:
        generated = result["generated"]
        print(f"images: {generated['rendered']} rendered, {generated['skipped']} reused, in {result['dir']}")
        print(result["table"])
    return 0


def _study_command(study_path: Path, args: argparse.Namespace) -> int:
    from selma.study import load_study, plan_study, run_study

    study = load_study(study_path)
    out = args.out or Path("selma-studies") / study.name
    locator = _locator(args)
    if args.dry_run:
        rows = plan_study(study, out, locator)
        if args.json:
            _print_json({"study": study.name, "cells": rows})
            return 0
        print(f"{study.name}: {len(study.variants)} variants x {len(study.suites)} suites -> {out}")
        for row in rows:
            if row["run"] is None:
                state = "LoRA to build first"
            else:
                run = row["run"]
                todo = ", ".join(
                    f"{m} {'cached' if i['cached'] else str(i['model_calls']) + ' calls'}"
                    for m, i in run["metrics"].items()
                )
                state = f"{run['n_images'] - run['images_cached']} images to render; {todo}"
            print(f"  {row['variant']:<28} {row['suite']:<14} {state}")
        if study.compute:
            print(f"compute: {study.compute}")
        return 0
    params: dict[str, Any] = {"timeout_min": args.timeout_min}
    if args.launcher == "slurm":
        params.update(slurm_array_parallelism=args.array_parallelism, gpus_per_node=args.gpus_per_node)
        if args.slurm_partition:
            params["slurm_partition"] = args.slurm_partition
    result = run_study(study, out, locator, launcher=args.launcher, launcher_params=params)
    print(result["table"].to_markdown())
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.csv'}, {out / 'study.json'}", file=sys.stderr)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """Build a study's variants and compare them."""
    return _study_command(args.study_file, args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """List or run the paper-reproduction studies."""
    from selma.paper import paper_configs
    from selma.study import load_study

    configs = paper_configs()
    if args.list or not args.name:
        rows = []
        for name, path in configs.items():
            study = load_study(path)
            rows.append([name, study.paper, study.base_model, len(study.variants), study.compute])
        print(_table(rows, ["study", "paper", "model", "variants", "compute"]))
        return 0
    if args.name not in configs:
        raise SelmaError(f"unknown paper study {args.name!r}; choose one of: {', '.join(configs)}")
    return _study_command(configs[args.name], args)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Add runs to a leaderboard CSV, or render one."""
    from selma.leaderboard import add_runs, render

    if args.action == "add":
        if not args.runs:
            raise SelmaError("leaderboard add needs at least one run directory")
        frame = add_runs(args.board, args.runs, model=args.model, variant=args.variant)
        print(f"{args.board}: {len(frame)} rows")
        return 0
    written = render(args.board, args.out or args.board.with_suffix(""), title=args.title)
    print(written["markdown"].read_text(encoding="utf-8"))
    print(f"wrote {written['markdown']} and {written['html']}", file=sys.stderr)
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    """Train, evaluate or export a shapes-world model."""
    from selma.world.train_model import (
        SamplingSettings,
        WorldTrainConfig,
        evaluate_world_pipeline,
        export_world_model,
        train_world_model,
    )

    if args.action == "train":
        config = WorldTrainConfig(
            architecture=args.arch,
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_per_skill=args.per_skill,
            caption_noise=args.caption_noise,
            **({"skill_weights": tuple(args.skill_weights)} if args.skill_weights else {}),
        )
        command = "selma-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        record = train_world_model(config, args.out, threads=args.threads, progress=not args.quiet, command=command)
        print(json.dumps(record))
        return 0
    if args.action == "export":
        record = export_world_model(args.run, args.step, args.to)
        print(f"{args.to}: step {record['steps']}, {json.dumps(record['evaluation'])}")
        return 0
    from selma.models import load_pipeline, resolve_model

    pipe = load_pipeline(resolve_model(args.model))
    scores = evaluate_world_pipeline(
        pipe, per_skill=args.per_skill, seed=args.seed, sampling=SamplingSettings(guidance_scale=args.guidance)
    )
    print(json.dumps(scores, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``selma-bench``."""
    from selma.merge import METHODS
    from selma.scoring.conventions import conventions
    from selma.scoring.matchers import matchers

    data = _data_options()
    parser = Parser(prog="selma-bench", description="Reproduce SELMA and score text-to-image models for faithfulness.")
    parser.add_argument("--version", action="version", version=f"selma-bench {__version__}")
    _add_verbosity(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("suites", parents=[data], help="list suites, or `suites show NAME`")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_suites)

    p = sub.add_parser("rescore", parents=[data], help="score recorded VQA answers (DSG CSV, TIFA result JSON)")
    p.add_argument("--suite", required=True, help="dsg, tifa160 or tifa")
    p.add_argument("--answers", required=True, type=Path, help="answers file")
    p.add_argument("--answers-format", choices=["dsg-csv", "tifa-results"], help="default: from the file suffix")
    p.add_argument("--t2i-model", help="which model's answers, when the file has several")
    p.add_argument(
        "--convention", choices=list(conventions), help="scoring convention (default: the metric's official one)"
    )
    p.add_argument("--matcher", choices=list(matchers), help="answer-to-choice mapping (default: the convention's)")
    p.add_argument("--matcher-model", help="local path (or hub id) of the SBERT model for --matcher sbert")
    p.add_argument("--strict", action="store_true", help="a blank answer is an error instead of scoring 0")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed")
    p.add_argument("--bootstrap", type=positive_int, default=2000, metavar="N", help="bootstrap resamples")
    p.add_argument("--label", help="row label in tables")
    p.add_argument("--out", type=Path, help="run directory (default: selma-runs/rescore-<suite>-<file>-<hash>)")
    p.add_argument("--force", action="store_true", help="replace a run of another configuration in --out")
    p.add_argument("--json", action="store_true", help="print the summary JSON")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("meta-eval", parents=[data], help="agreement of VQA scores with human ratings (TIFA-160)")
    p.add_argument("--likert", required=True, type=Path, help="tifa160-likert-anns.csv")
    p.add_argument("--answers", required=True, type=Path, help="folder of <vqa>_<dsg|tifa|vq2a>.csv answer files")
    p.add_argument("--tifa-questions", type=Path, help="tifa_v1.0_question_answers.json, for multiple-choice questions")
    p.add_argument("--out", type=Path, help="write meta-eval summary and per-image records here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_meta_eval)

    p = sub.add_parser("compare", help="paired-bootstrap difference of two runs")
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--bootstrap", type=positive_int, default=2000, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "datagen", parents=[data], help="stage 1: skill prompts by in-context learning with an LLM (resumable)"
    )
    p.add_argument("--skills", help="comma-separated (default: SELMA's six, read from its prompt-generation data)")
    p.add_argument("--skills-file", type=Path, help="a YAML file of extra skills")
    p.add_argument("--n", type=positive_int, default=1000, help="prompts per skill")
    p.add_argument("--backend", default="offline", choices=["offline", "world", "transformers", "openai"])
    p.add_argument("--llm", help="transformers: local path or hub id; openai: the model name")
    p.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)")
    p.add_argument("--completions", action="store_true", help="use the legacy completions endpoint, not chat")
    p.add_argument("--max-tokens", type=positive_int, default=3072, help="SELMA's: 3072")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", required=True, type=Path, help="JSONL output; an existing file is resumed")
    p.add_argument("--force", action="store_true", help="replace an output made with other settings")
    p.set_defaults(func=cmd_datagen)

    p = sub.add_parser("generate", help="stage 2: images for a prompt file (resumable; accelerate launch shards it)")
    p.add_argument("--prompts", required=True, type=Path, help="JSONL of {id, text} or one prompt per line")
    p.add_argument("--model", required=True, help="registry name (see `models`) or a local diffusers directory")
    p.add_argument(
        "--variant", default="base", help="base, expert:<skill>, multi, merged[:<method>], gt:<name>, w2s:<weak>"
    )
    p.add_argument("--workdir", type=Path, default=Path("selma-work"), help="where variants' LoRAs live")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--steps", type=positive_int, help="default: the model's")
    p.add_argument("--guidance-scale", type=non_negative_float, help="default: the model's")
    p.add_argument("--resolution", type=resolution, help="default: the model's native resolution")
    p.add_argument("--images-per-prompt", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--limit", type=positive_int, help="only the first N prompts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--force", action="store_true", help="replace an output made with other settings")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="stage 3: train a LoRA (diffusers conventions, the paper's defaults)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, nargs="+", help="image folders with metadata.jsonl, or datasets sources")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--as", dest="as_variant", help="or: expert:<skill>, multi, gt:<name>, w2s:<weak> in --workdir")
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    p.add_argument("--rank", type=positive_int, default=128)
    p.add_argument("--alpha", type=positive_int, default=128)
    p.add_argument("--learning-rate", type=positive_float, default=3e-4)
    p.add_argument("--batch-size", type=positive_int, help="default 16 (SDXL 4)")
    p.add_argument("--gradient-accumulation-steps", type=positive_int, help="default 4 (SDXL 8)")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default 5,000; SDXL 10,000)")
    p.add_argument(
        "--resolution", type=int, help="default: SELMA's (512 for SD v1/v2, 1024 for SDXL; native for others)"
    )
    p.add_argument("--vae", help="autoencoder to train with (default SDXL: madebyollin/sdxl-vae-fp16-fix, as SELMA)")
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    p.add_argument("--seed", type=non_negative_int, default=42)
    p.add_argument("--checkpointing-steps", type=positive_int, default=500)
    p.add_argument("--checkpoints-total-limit", type=positive_int)
    p.add_argument("--resume", help="'latest' or a checkpoint folder")
    p.add_argument("--cache", action="store_true", help="cache VAE latents (both flips) and text embeddings")
    p.add_argument("--image-column", default="image")
    p.add_argument("--caption-column", default="text")
    p.add_argument("--limit", type=positive_int, help="use the first N examples")
    p.add_argument("--device", help="cpu to force the CPU")
    p.add_argument("--force", action="store_true", help="replace an output made with other settings")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("merge", help="stage 4: merge experts (paper: sum of ΔW at 1/N; peft combination types)")
    p.add_argument("--model", required=True)
    p.add_argument(
        "--experts", nargs="+", type=_role_path, metavar="NAME=DIR", help="default: all experts in --workdir"
    )
    p.add_argument("--method", default="paper", choices=list(METHODS))
    p.add_argument("--weights", type=float_list, help="comma-separated, default 1/N each")
    p.add_argument("--density", type=unit_interval, help="for ties, dare_*, magnitude_prune (default 0.5)")
    p.add_argument("--svd-rank", type=positive_int)
    p.add_argument("--seed", type=non_negative_int, default=0, help="for dare_* random pruning")
    p.add_argument("--out", type=Path, help="default: <workdir>/<model>/merged-<method>")
    p.add_argument("--fused-pipeline", type=Path, help="also save a full pipeline with the merge fused in")
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    p.add_argument("--force", action="store_true", help="replace an output made with other settings")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("demo", help="the SELMA study in the shapes world, exactly scored, on a CPU")
    p.add_argument("--out", type=Path, default=Path("selma-demo"))
    p.add_argument("--steps", type=positive_int, help="training steps per LoRA (default 300)")
    p.add_argument("--prompts-per-skill", type=positive_int, help="LLM-stage prompts per skill (default 40)")
    p.add_argument("--train-images", type=positive_int, help="base-model images per training prompt (default 5)")
    p.add_argument("--suite", choices=["shapes", "shapes-mini", "shapes-large"], help="evaluation suite (shapes)")
    p.add_argument("--seed", type=non_negative_int)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("world", help="train, evaluate or export a shapes-world model (selma/world)")
    world = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = world.add_parser("train", help="train a world model from scratch (resumes from <out>/state/)")
    q.add_argument("--arch", default="base", choices=["base", "weak"])
    q.add_argument("--steps", type=positive_int, default=12000)
    q.add_argument("--batch-size", type=positive_int, default=64)
    q.add_argument("--lr", type=positive_float, default=1e-3)
    q.add_argument("--seed", type=non_negative_int, default=0)
    q.add_argument("--eval-every", type=positive_int, default=1000)
    q.add_argument("--per-skill", type=positive_int, default=32, help="evaluation prompts per skill")
    q.add_argument("--threads", type=positive_int, help="torch CPU threads")
    q.add_argument(
        "--caption-noise",
        type=caption_noise,
        default=caption_noise(""),
        metavar="RATE=P,...",
        help="alt-text-like captions: count_omitted, count_vague, color_dropped, object_omitted, relation_stated",
    )
    q.add_argument(
        "--skill-weights", type=float_list, help="shares of object, count, binding, spatial, count_binding in a batch"
    )
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=cmd_world)
    q = world.add_parser("eval", help="per-skill exact scores of a world model")
    q.add_argument("model", help="shapes-base, shapes-weak or a pipeline directory")
    q.add_argument("--per-skill", type=positive_int, default=32)
    q.add_argument("--seed", type=non_negative_int, default=0)
    q.add_argument("--guidance", type=non_negative_float, default=4.0)
    q.set_defaults(func=cmd_world)
    q = world.add_parser("export", help="copy a training run's pipeline at a step, with its training record")
    q.add_argument("run", type=Path)
    q.add_argument("--step", type=positive_int, required=True)
    q.add_argument("--to", type=Path, required=True)
    q.set_defaults(func=cmd_world)

    p = sub.add_parser("metrics", help="list the scorers, their conventions and default checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("score", parents=[data], help="score a folder of images of a suite's prompts")
    p.add_argument("--suite", required=True)
    p.add_argument(
        "--images", required=True, type=Path, help="imagefolder (metadata.jsonl) or <prompt_id>[_k].png files"
    )
    p.add_argument(
        "--metric", required=True, action="append", help="pickscore, hpsv2, hpsv2.1, imagereward, vqascore, dsg, tifa"
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="[METRIC:]ROLE=PATH",
        help="a local checkpoint for a role (see `metrics`); e.g. pickscore:model=/models/PickScore_v1; "
        "for dsg/tifa: vqa=NAME, model=PATH and (TIFA's SBERT) matcher=PATH",
    )
    p.add_argument(
        "--convention", choices=list(conventions), help="dsg/tifa scoring convention (default: the official one)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=positive_int, help="only the first N prompts that have images")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--label")
    p.add_argument("--out", type=Path)
    p.add_argument("--force", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("run", parents=[data], help="generate (cached) -> score (cached) -> table for one variant")
    p.add_argument("--suite", required=True)
    p.add_argument("--model", required=True, help="registry name or local diffusers directory")
    p.add_argument("--variant", default="base")
    p.add_argument("--metric", action="append", help="default: the suite's own (dsg, tifa)")
    p.add_argument("--vqa", help="VQA model for dsg/tifa (see `metrics`)")
    p.add_argument(
        "--convention",
        action="append",
        choices=list(conventions),
        help="a dsg/tifa scoring convention (default: the official one); repeat for both",
    )
    p.add_argument("--vqa-model", help="its local path or hub id")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[METRIC:]ROLE=PATH")
    p.add_argument("--limit", type=positive_int)
    p.add_argument("--images-per-prompt", type=positive_int, default=1)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--workdir", type=Path, default=Path("selma-work"))
    p.add_argument("--out", type=Path, default=Path("selma-runs") / "run")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is cached; load nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    launch = argparse.ArgumentParser(add_help=False)
    group = launch.add_argument_group("launcher (submitit)")
    group.add_argument("--launcher", choices=["slurm", "local", "debug"], help="run each stage as a job array")
    group.add_argument("--slurm-partition")
    group.add_argument("--gpus-per-node", type=positive_int, default=1)
    group.add_argument("--timeout-min", type=positive_int, default=24 * 60)
    group.add_argument("--array-parallelism", type=positive_int, default=16)

    p = sub.add_parser("study", parents=[data, launch], help="build a study's variants and compare them (YAML)")
    p.add_argument("study_file", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, help="default: selma-studies/<name>")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("reproduce", parents=[data, launch], help="the paper's tables as studies: --list, or run one")
    p.add_argument("name", nargs="?")
    p.add_argument("--list", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("leaderboard", help="add runs to a leaderboard CSV, or render it (Markdown + HTML)")
    p.add_argument("action", choices=["add", "render"])
    p.add_argument("board", type=Path, help="e.g. leaderboards/dsg.csv")
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--model", help="row label (default: from the run's label)")
    p.add_argument("--variant")
    p.add_argument("--title")
    p.add_argument("--out", type=Path, help="render: output folder (default: the board's name)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("report", help="Markdown/LaTeX/CSV tables and a figure from runs")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--paper",
        choices=["table1", "table2", "table4", "figure1"],
        help="put the runs beside the paper's numbers (runs labelled <model>/<variant>)",
    )
    p.add_argument("--model", help="with --paper: the base model of the paper's rows (sd-v1-4, sd-v2, sdxl-base)")
    p.set_defaults(func=cmd_report)
    _verbosity_everywhere(parser)
    return parser


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``-h`` away)."""

    def error(self, message: str) -> NoReturn:
        """Print ``selma-bench: error: <message>`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="only errors on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="tracebacks and library logs")


def _verbosity_everywhere(parser: argparse.ArgumentParser) -> None:
    """-q and -v also after the subcommand (a subcommand's default leaves the top-level value alone)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_verbosity(sub, default=argparse.SUPPRESS)
                _verbosity_everywhere(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``selma-bench`` console script: every failure is one line on stderr and exit
    status 2 (``-v`` adds the traceback); nothing is left half-written by the stages.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "show" and not args.name:
        parser.error("suites show needs a suite name")
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING,
        format="warning: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if not args.verbose:  # library notices (torchvision fallbacks, LoRA loading notes) only with -v
        for library in ("transformers", "diffusers", "peft", "accelerate", "datasets", "huggingface_hub"):
            logging.getLogger(library).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except SelmaError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"selma-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("selma-bench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one error boundary: an unexpected failure is still one line
        if args.verbose:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"selma-bench: error: {type(exc).__name__}: {first} (an unexpected failure: run with -v for the "
            "traceback, and please report it)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
