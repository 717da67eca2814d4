from __future__ import annotations

import http.server
import json
import random
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import DATA

from selma.errors import DataInputError, SelmaError
from selma.harness.suites import DataLocator
from selma.recipe.datagen.backends import OfflineBackend, OpenAIBackend, TransformersBackend
from selma.recipe.datagen.icl import build_request, parse_completion
from selma.recipe.datagen.loop import RougeFilter, generate_prompts
from selma.recipe.datagen.skills import (
    SELMA_SKILLS,
    extract_prompt_generation,
    load_skills,
    resolve_skills,
    selma_skills,
)
from selma.stage import marker_path

SELMA_JSON = json.loads((DATA / "selma" / "prompt_generation.json").read_text())


@pytest.fixture(scope="module")
def skills() -> dict[str, Any]:
    return selma_skills(DataLocator.from_env(DATA, offline=True))


def official_encode_prompt(instruction: str, prompt_instructions: list[str]) -> str:
    """SELMA's encode_prompt (llm/prompt_generation.py lines 81-84), its header given."""
    prompt = instruction
    for idx, caption in enumerate(prompt_instructions):
        prompt += "\n"
        prompt += f"{idx + 1}. {caption}\n"
    return prompt


def official_post_process(num_prompt_instructions: int, text: str) -> list[str]:
    """SELMA's post_process_gpt4_response (lines 87-102) on a completion's text."""
    captions = []
    idx = num_prompt_instructions
    for prompt in text.split("\n"):
        if prompt == "":
            continue
        if f"{idx + 1}. " not in prompt:
            continue
        captions.append(prompt.split(f"{idx + 1}. ")[1])
        idx += 1
    return captions


def test_selma_skills_are_read_verbatim_from_the_data_file(skills: dict[str, Any]) -> None:
    assert list(skills) == list(SELMA_SKILLS)
    for name, original in SELMA_SKILLS.items():
        assert skills[name].instruction == SELMA_JSON["skills"][original]["instruction"]
        assert list(skills[name].seeds) == SELMA_JSON["skills"][original]["seeds"]
    assert skills["countbench"].seeds[0] == "background photo of three light bulbs"
    assert "2. The count should not be larger than 3." in skills["countbench"].instruction


@pytest.mark.parametrize("name", list(SELMA_SKILLS))
def test_request_equals_selmas_encode_prompt(skills: dict[str, Any], name: str) -> None:
    rng = random.Random(7)
    examples = rng.sample([*skills[name].seeds, "A red bus.", "Two cats on a sofa."], 3)
    request = build_request(skills[name], examples)
    assert request == official_encode_prompt(skills[name].instruction, examples)
    assert request.endswith(f"\n3. {examples[2]}\n") and request.count(f"\n1. {examples[0]}\n") == 1


def test_skills_fall_back_to_selmas_source_file(tmp_path: Path) -> None:
    # a source file of the official shape (if/elif over SKILL; the seeds in __main__), from the data file
    lines = ["def encode_prompt(prompt_instructions):"]
    for k, (name, entry) in enumerate(SELMA_JSON["skills"].items()):
        lines += [f"    {'if' if k == 0 else 'elif'} SKILL == {name!r}:", f"        prompt = {entry['instruction']!r}"]
    lines += ["    return prompt", "", 'if __name__ == "__main__":']
    entries = [(n, e) for n, e in SELMA_JSON["skills"].items() if e["seeds"]]
    for k, (name, entry) in enumerate(entries):
        lines += [f"    {'if' if k == 0 else 'elif'} SKILL == {name!r}:", f"        seeds = {entry['seeds']!r}"]
    source = tmp_path / "prompt_generation.py"
    source.write_text("\n".join(lines) + "\n")
    extracted = extract_prompt_generation(source.read_text())
    for name, entry in SELMA_JSON["skills"].items():
        assert extracted["skills"][name] == {"instruction": entry["instruction"], "seeds": entry["seeds"]}
    locator = DataLocator.from_env(tmp_path / "empty", offline=True, overrides={"selma_source": source})
    assert selma_skills(locator)["whoops"].seeds == tuple(SELMA_JSON["skills"]["Whoops"]["seeds"])


def test_without_data_or_download_the_error_names_both(tmp_path: Path) -> None:
    locator = DataLocator.from_env(tmp_path, offline=True)
    with pytest.raises(SelmaError, match=r"selma/prompt_generation.py.*--data-dir"):
        resolve_skills(["coco"], locator)
    assert [s.name for s in resolve_skills(["world_count"], locator)] == ["world_count"]  # no data needed


@pytest.mark.parametrize(
    "completion",
    [
        "4. A red bus.\n5. Two cats.\n6. Three dogs.",
        "\n4. A red bus. \n\n5. Two cats.\n7. skipped\n6. Three dogs.",
        "Sure! 4. A red bus.\n5) not numbered right\n5. Two cats. 5. Again",
        "A red bus.\n5. Two cats.",
        "",
        "4. \n5. x",
    ],
)
def test_parse_completion_is_selmas_post_process(completion: str) -> None:
    assert parse_completion(completion) == official_post_process(3, completion)


def test_rouge_filter_rejects_only_above_the_threshold() -> None:
    rouge = RougeFilter()
    pool = ["a red cat sitting on a wooden table in the kitchen"]
    assert not rouge.accepts("a red cat sitting on a wooden table in a kitchen", pool)
    assert rouge.accepts("two penguins skating on a frozen lake at night", pool)
    assert rouge.max_similarity("a red cat", []) == 0.0
    exact = RougeFilter(threshold=rouge.max_similarity("a b c d e", ["a b c d x"]))
    assert exact.accepts("a b c d e", ["a b c d x"])  # equal to the threshold is kept (SELMA: > rejects)


class Recording:
    """A backend that records each round's requests and answers with numbered lines."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.rounds = lines, []

    def complete_many(self, prompts: list[str], *, seeds: list[int]) -> list[str]:
        self.rounds.append(prompts)
        k = len(self.rounds)
        return [f"4. {self.lines[(2 * k + i) % len(self.lines)]}\n5. {prompts[0].split('1. ')[-1]}" for i in range(5)]

    def describe(self) -> dict[str, Any]:
        return {"backend": "recording"}


def test_rounds_batch_five_requests_sampled_from_the_pool_and_accept_in_order(
    skills: dict[str, Any], tmp_path: Path
) -> None:
    backend = Recording(DIVERSE)
    counts = generate_prompts([skills["coco"]], 4, backend, tmp_path / "p.jsonl", seed=0, progress=False)
    assert counts == {"coco": 4}
    first = backend.rounds[0]
    assert len(first) == 5  # request_batch_size
    instruction = skills["coco"].instruction
    for request in first:  # 3 examples of the seeds (the whole pool before the first round)
        examples = [request.split(f"\n{i}. ")[1].split("\n")[0] for i in (1, 2, 3)]
        assert set(examples) <= set(skills["coco"].seeds) and len(set(examples)) == 3
        assert request == official_encode_prompt(instruction, examples)
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"coco_{i:05d}" for i in range(4)]
    texts = [r["text"] for r in rows]
    assert len(set(texts)) == 4 and not set(texts) & set(skills["coco"].seeds)  # echoed examples were rejected


def test_offline_generation_is_deterministic_and_filtered(skills: dict[str, Any], tmp_path: Path) -> None:
    chosen = [skills["coco"], skills["whoops"]]
    counts = generate_prompts(chosen, 10, OfflineBackend(), tmp_path / "a.jsonl", seed=3, progress=False)
    assert counts == {"coco": 10, "whoops": 10}
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows if r["skill"] == "coco"] == [f"coco_{i:05d}" for i in range(10)]
    rouge = RougeFilter()
    for skill in chosen:
        texts = list(skill.seeds)
        for row in (r for r in rows if r["skill"] == skill.name):
            assert rouge.accepts(row["text"], texts)
            texts.append(row["text"])
    generate_prompts(chosen, 10, OfflineBackend(), tmp_path / "b.jsonl", seed=3, progress=False)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    provenance = json.loads((tmp_path / "a.jsonl.provenance.json").read_text())["provenance"]
    assert provenance["config"]["backend"] == {"backend": "offline", "n_lines": 8}
    assert provenance["config"]["settings"] == {"n_examples": 3, "requests_per_round": 5, "rouge_threshold": 0.8}


def test_interrupted_generation_resumes_to_the_same_prompts(skills: dict[str, Any], tmp_path: Path) -> None:
    chosen = [skills["countbench"]]
    generate_prompts(chosen, 60, OfflineBackend(), tmp_path / "whole.jsonl", seed=1, progress=False)
    lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    rounds = [json.loads(line)["request"] for line in lines]
    assert rounds[-1] > 0 and rounds[-1] == rounds[-2]
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # killed inside a later round
    marker = json.loads(marker_path(tmp_path / "whole.jsonl", folder=False).read_text())
    marker_path(tmp_path / "cut.jsonl", folder=False).write_text(json.dumps({**marker, "complete": False}))
    generate_prompts(chosen, 60, OfflineBackend(), tmp_path / "cut.jsonl", seed=1, progress=False)
    assert (tmp_path / "cut.jsonl").read_text().splitlines() == lines
    with pytest.raises(SelmaError, match=r"made with other settings \(seed: 1 -> 2\)"):
        generate_prompts(chosen, 60, OfflineBackend(), tmp_path / "cut.jsonl", seed=2, progress=False)
    assert (tmp_path / "cut.jsonl").read_text().splitlines() == lines  # nothing was touched
    generate_prompts(chosen, 5, OfflineBackend(), tmp_path / "cut.jsonl", seed=2, progress=False, force=True)
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == 5


def test_unusable_completions_stop_with_a_message(skills: dict[str, Any], tmp_path: Path) -> None:
    class Silent(OfflineBackend):
        def complete(self, prompt: str, *, seed: int) -> str:
            return "I cannot help with that."

    with pytest.raises(SelmaError, match="only 0 of 3 prompts accepted after 5 rounds"):
        generate_prompts([skills["coco"]], 3, Silent(), tmp_path / "x.jsonl", max_rounds=5, progress=False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("coco:\n  rules: [r]\n  seeds: [a, b]\n", "skill 'coco': field 'seeds': expected at least 3"),
        ("coco:\n  rules: []\n  seeds: [a, b, c]\n", "skill 'coco': field 'rules': expected a non-empty list"),
        ("coco:\n  rules: [r]\n  seeds: [a, b, c]\n  max_words: 3\n", "skill 'coco': field 'max_words': unknown key"),
        ("coco: 3\n", "skill 'coco': expected a mapping"),
        ("", "expected a mapping of skill names"),
    ],
)
def test_bad_skill_files(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "skills.yaml"
    path.write_text(body)
    with pytest.raises(DataInputError, match=message):
        load_skills(path)


def test_user_skills_get_selmas_layout(tmp_path: Path) -> None:
    path = tmp_path / "skills.yaml"
    path.write_text("mine:\n  rules: [Describe a kitchen., Keep it short.]\n  seeds: [a, b, c]\n")
    skill = load_skills(path)["mine"]
    assert skill.instruction.endswith(
        "1. Describe a kitchen.\n2. Keep it short.\n\nHere're some image description examples:\n"
    )
    assert build_request(skill, ["a", "b", "c"]) == official_encode_prompt(skill.instruction, ["a", "b", "c"])


# --- an OpenAI-compatible server on loopback, spoken to by the real `openai` client ---

DIVERSE = [
    "A violin resting on a velvet armchair beside a window",
    "Four joggers crossing a bridge at sunrise",
    "A bowl of ramen with chopsticks on a marble counter",
    "An old typewriter covered in dust in an attic",
    "A hot air balloon floating over snowy mountains",
    "Children flying kites on a windy beach",
]


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["_path"] = self.path
        self.requests.append(body)
        k = len(self.requests)
        prompts = body.get("prompt") or [body["messages"][0]["content"]]
        prompts = [prompts] if isinstance(prompts, str) else prompts

        def text(i: int, prompt: str) -> str:
            example = prompt.splitlines()[-1].split(". ", 1)[1]  # the 3rd example: a duplicate is rejected
            return f"4. {DIVERSE[(2 * k + i) % 6]} number {k}\n5. {example}\n6. {DIVERSE[(2 * k + i + 1) % 6]} take {k}"

        common = {"id": f"x{k}", "created": 0, "model": body["model"], "usage": None}
        if self.path.endswith("/chat/completions"):
            message = {"role": "assistant", "content": text(0, prompts[0])}
            payload = {**common, "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
            payload["choices"][0]["finish_reason"] = "stop"
        else:  # the choices come back out of order: the backend must sort them by index
            choices = [
                {"index": i, "text": text(i, p), "finish_reason": "stop", "logprobs": None}
                for i, p in enumerate(prompts)
            ]
            payload = {**common, "object": "text_completion", "choices": choices[::-1]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1"
    httpd.shutdown()


@pytest.mark.parametrize("chat", [True, False])
def test_openai_compatible_server(skills: dict[str, Any], server: str, tmp_path: Path, chat: bool) -> None:
    backend = OpenAIBackend("local-llm", base_url=server, chat=chat)
    counts = generate_prompts([skills["coco"]], 5, backend, tmp_path / "p.jsonl", seed=0, progress=False)
    assert counts == {"coco": 5}
    texts = [json.loads(x)["text"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert texts[:2] == [f"{DIVERSE[2]} number 1", f"{DIVERSE[3]} take 1"]  # the echoed example was rejected
    first = _Handler.requests[0]
    assert first["_path"] == ("/v1/chat/completions" if chat else "/v1/completions")
    if chat:
        assert len(_Handler.requests) >= 5  # one call per request
    else:  # SELMA's batch: 5 prompts in one call, n=1, its decoding settings
        assert isinstance(first["prompt"], list) and len(first["prompt"]) == 5 and first["n"] == 1
        assert first["max_tokens"] == 3072
    prompt = first["messages"][0]["content"] if chat else first["prompt"][0]
    assert prompt.startswith(skills["coco"].instruction) and prompt.endswith("\n")
    assert first["temperature"] == 1.0 and first["top_p"] == 1.0 and isinstance(first["seed"], int)


def test_openai_server_down_is_a_clear_error(
    skills: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    backend.client = backend.client.with_options(max_retries=0, timeout=5)
    with pytest.raises(SelmaError, match="LLM server http://127.0.0.1:9/v1"):
        generate_prompts([skills["coco"]], 1, backend, tmp_path / "p.jsonl", progress=False)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer GPT-2 with a word-level tokenizer trained here on SELMA's skill text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [line for entry in SELMA_JSON["skills"].values() for line in (entry["instruction"], *entry["seeds"])]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    directory = tmp_path_factory.mktemp("lm")
    tokenizer.save_pretrained(directory)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=1024)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def test_transformers_backend_samples_repeatably(skills: dict[str, Any], tiny_lm: Path) -> None:
    backend = TransformersBackend(str(tiny_lm), max_new_tokens=12)
    request = build_request(skills["coco"], list(skills["coco"].seeds[:3]))
    a, b, c = backend.complete_many([request, request, request], seeds=[1, 1, 2])
    assert a == b and a != c and len(a.split()) >= 6
    assert backend.describe()["model"] == str(tiny_lm) and backend.describe()["max_new_tokens"] == 12


def test_transformers_backend_uses_the_chat_template(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = TransformersBackend(str(tiny_lm), max_new_tokens=4)
    backend.tokenizer.chat_template = "{% for m in messages %}USER {{ m['content'] }}{% endfor %} ASSISTANT"
    seen: list[str] = []
    call = type(backend.tokenizer).__call__
    monkeypatch.setattr(
        type(backend.tokenizer), "__call__", lambda self, text, **kw: (seen.append(text), call(self, text, **kw))[1]
    )
    backend.complete("Please write more", seed=0)
    assert seen == ["USER Please write more ASSISTANT"]


def test_datagen_cli_reads_selmas_skills_from_the_data_dir(tmp_path: Path) -> None:
    from selma.cli import main

    out = tmp_path / "p.jsonl"
    args = ["datagen", "--skills", "coco,countbench", "--n", "3", "--backend", "offline", "--out", str(out)]
    assert main([*args, "--data-dir", str(DATA)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"{s}_{i:05d}" for s in ("coco", "countbench") for i in range(3)]
    config = json.loads((tmp_path / "p.jsonl.provenance.json").read_text())["provenance"]["config"]
    assert config["skills"][0]["seeds"] == SELMA_JSON["skills"]["Coco"]["seeds"]
    assert main(["datagen", "--skills", "nope", "--out", str(tmp_path / "q.jsonl")]) == 2
