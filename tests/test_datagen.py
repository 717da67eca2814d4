from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from selma.datagen.backends import OfflineBackend, OpenAIBackend, TransformersBackend
from selma.datagen.icl import build_request, parse_completion
from selma.datagen.run import RougeFilter, generate_prompts
from selma.datagen.skills import load_skills
from selma.errors import DataInputError, SelmaError

SKILLS = load_skills()


def test_builtin_skills_are_the_papers_five() -> None:
    assert list(SKILLS) == ["coco", "localized_narratives", "diffusiondb", "countbench", "whoops"]
    assert all(len(s.seeds) >= 3 and s.rules for s in SKILLS.values())
    assert SKILLS["localized_narratives"].max_words == 50 and SKILLS["countbench"].max_words == 30


def test_request_shows_rules_and_three_numbered_examples() -> None:
    skill = SKILLS["countbench"]
    request = build_request(skill, ["ex one", "ex two", "ex three"])
    assert request.startswith("Please write 20 more diverse image descriptions.")
    for i, rule in enumerate(skill.rules, start=1):
        assert f"{i}. {rule}" in request
    assert request.endswith("Here are some image description examples:\n1. ex one\n2. ex two\n3. ex three\n4.")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (" A red bus.\n5. Two cats.\n6) Three dogs.\n", ["A red bus.", "Two cats.", "Three dogs."]),
        ("\n4. A red bus.\n5. Two cats.\n7. skipped\n6. Three dogs.", ["A red bus.", "Two cats.", "Three dogs."]),
        (" A red bus.\nSure! Here are more:\n5. Two cats.", ["A red bus.", "Two cats."]),
        ("", []),
    ],
)
def test_parse_completion(completion: str, expected: list[str]) -> None:
    assert parse_completion(completion) == expected


def test_rouge_filter_threshold() -> None:
    rouge = RougeFilter()
    pool = ["a red cat sitting on a wooden table in the kitchen"]
    assert not rouge.accepts("a red cat sitting on a wooden table in a kitchen", pool)
    assert rouge.accepts("two penguins skating on a frozen lake at night", pool)
    assert rouge.max_similarity("a red cat", []) == 0.0


def test_offline_generation_is_deterministic_and_filtered(tmp_path: Path) -> None:
    skills = [SKILLS["coco"], SKILLS["whoops"]]
    counts = generate_prompts(skills, 10, OfflineBackend(), tmp_path / "a.jsonl", seed=3, progress=False)
    assert counts == {"coco": 10, "whoops": 10}
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows if r["skill"] == "coco"] == [f"coco_{i:05d}" for i in range(10)]
    rouge = RougeFilter()
    for skill in skills:
        texts = list(skill.seeds)
        for row in (r for r in rows if r["skill"] == skill.name):
            assert rouge.accepts(row["text"], texts)
            texts.append(row["text"])
    generate_prompts(skills, 10, OfflineBackend(), tmp_path / "b.jsonl", seed=3, progress=False)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    provenance = json.loads((tmp_path / "a.jsonl.provenance.json").read_text())["provenance"]
    assert provenance["config"]["backend"] == {"backend": "offline", "n_lines": 8}


def test_interrupted_generation_resumes_to_the_same_prompts(tmp_path: Path) -> None:
    skills = [SKILLS["countbench"]]
    generate_prompts(skills, 12, OfflineBackend(), tmp_path / "whole.jsonl", seed=1, progress=False)
    lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:5]) + "\n")  # killed inside a request
    generate_prompts(skills, 12, OfflineBackend(), tmp_path / "cut.jsonl", seed=1, progress=False)
    assert (tmp_path / "cut.jsonl").read_text().splitlines() == lines
    with pytest.raises(SelmaError, match="other skills, backend or seed"):
        generate_prompts(skills, 12, OfflineBackend(), tmp_path / "cut.jsonl", seed=2, progress=False)


def test_unusable_completions_stop_with_a_message(tmp_path: Path) -> None:
    class Silent:
        def complete(self, prompt: str, *, seed: int) -> str:
            return "I cannot help with that."

        def describe(self) -> dict[str, Any]:
            return {"backend": "silent"}

    with pytest.raises(SelmaError, match="only 1 of 3 prompts accepted after 5 requests"):
        generate_prompts([SKILLS["coco"]], 3, Silent(), tmp_path / "x.jsonl", max_requests=5, progress=False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("coco:\n  rules: [r]\n  seeds: [a, b]\n", "skill 'coco': field 'seeds': expected at least 3"),
        ("coco:\n  rules: []\n  seeds: [a, b, c]\n", "skill 'coco': field 'rules': expected a non-empty list"),
        ("coco: 3\n", "skill 'coco': expected a mapping"),
        ("", "expected a mapping of skill names"),
    ],
)
def test_bad_skill_files(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "skills.yaml"
    path.write_text(body)
    with pytest.raises(DataInputError, match=message):
        load_skills(path)


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
        prompt = body.get("prompt") or body["messages"][0]["content"]
        example = prompt.splitlines()[-2].split(". ", 1)[1]  # the 3rd example: a near-duplicate is rejected
        lines = [f"{DIVERSE[(2 * k) % 6]} number {k}", f"5. {example}", f"6. {DIVERSE[(2 * k + 1) % 6]} take {k}"]
        text = "\n".join(lines)
        common = {"id": f"x{k}", "created": 0, "model": body["model"], "usage": None}
        if self.path.endswith("/chat/completions"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            payload = {**common, "object": "chat.completion", "choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            payload = {**common, "object": "text_completion", "choices": [choice]}
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
def test_openai_compatible_server(server: str, tmp_path: Path, chat: bool) -> None:
    backend = OpenAIBackend("local-llm", base_url=server, chat=chat)
    counts = generate_prompts([SKILLS["coco"]], 5, backend, tmp_path / "p.jsonl", seed=0, progress=False)
    assert counts == {"coco": 5}
    texts = [json.loads(x)["text"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert texts[:2] == [f"{DIVERSE[2]} number 1", f"{DIVERSE[3]} take 1"]  # the echoed example was rejected
    first = _Handler.requests[0]
    assert first["_path"] == ("/v1/chat/completions" if chat else "/v1/completions")
    prompt = first["messages"][0]["content"] if chat else first["prompt"]
    assert prompt.count("\n1. ") == 2 and prompt.endswith("\n4.")  # rule 1 and example 1
    assert first["temperature"] == 1.0 and first["top_p"] == 1.0 and isinstance(first["seed"], int)


def test_openai_server_down_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    backend.client = backend.client.with_options(max_retries=0, timeout=5)
    with pytest.raises(SelmaError, match="LLM server http://127.0.0.1:9/v1"):
        generate_prompts([SKILLS["coco"]], 1, backend, tmp_path / "p.jsonl", progress=False)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer GPT-2 with a word-level tokenizer trained here on the skills' text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = [line for s in SKILLS.values() for line in (*s.rules, *s.seeds)]
    corpus += [build_request(SKILLS["coco"], SKILLS["coco"].seeds[:3])]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    directory = tmp_path_factory.mktemp("lm")
    tokenizer.save_pretrained(directory)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=1024)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def test_transformers_backend_samples_repeatably(tiny_lm: Path) -> None:
    backend = TransformersBackend(str(tiny_lm), max_new_tokens=12)
    request = build_request(SKILLS["coco"], SKILLS["coco"].seeds[:3])
    a, b, c = (backend.complete(request, seed=s) for s in (1, 1, 2))
    assert a == b and a != c and len(a.split()) >= 6
    assert backend.describe()["model"] == str(tiny_lm)


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


def test_datagen_cli_with_the_transformers_backend(tiny_lm: Path, tmp_path: Path) -> None:
    from selma.cli import main

    # a random LM's first line continues item 4, so its words become prompts: the machinery, end to end
    code = main(
        [
            "datagen",
            "--skills",
            "coco",
            "--n",
            "2",
            "--backend",
            "transformers",
            "--llm",
            str(tiny_lm),
            "--max-tokens",
            "8",
            "--out",
            str(tmp_path / "p.jsonl"),
        ]
    )
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["coco_00000", "coco_00001"] and all(r["text"].strip() for r in rows)
    assert main(["datagen", "--skills", "nope", "--out", str(tmp_path / "q.jsonl")]) == 2
