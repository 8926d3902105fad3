"""Fine-tuning data through `datasets`, from local JSONL (offline)."""

import json

import pytest

from overtrain import corpus, data


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    corpus.build_tokenizer(corpus.build_language(topics=2, seed=0), d)
    return d


HH = [
    {"chosen": f"\n\nHuman: hello {i}\n\nAssistant: hi {i}\n\nHuman: and?\n\nAssistant: answer {i}", "rejected": "x"}
    for i in range(20)
]


def test_hh_messages():
    msgs = data.hh_messages(HH[3]["chosen"])
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[-1]["content"] == "answer 3"


def test_hh_plain_template_loss_on_last_reply(tmp_path, tokenizer_dir):
    src = write_jsonl(tmp_path / "hh.jsonl", HH)
    spec = {"path": "json", "data_files": str(src), "format": "hh"}
    out = tmp_path / "out.jsonl"
    assert data.prepare(spec, tokenizer_dir, out, n_examples=5, seed=0) == 5
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for r in rows:
        assert r["prompt"].startswith("### Instruction:\nhello ")
        assert r["prompt"].endswith("### Response:\n")
        assert r["completion"].startswith("answer ") and r["completion"].endswith("<eos>")
    again = tmp_path / "again.jsonl"
    data.prepare(spec, tokenizer_dir, again, n_examples=5, seed=0)
    assert again.read_text() == out.read_text()  # same seed, same subsample
    other = tmp_path / "other.jsonl"
    data.prepare(spec, tokenizer_dir, other, n_examples=5, seed=1)
    assert other.read_text() != out.read_text()


def test_chat_template_splits_prompt_and_response(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    prompt, completion = data.render_chat(tok, data.hh_messages(HH[0]["chosen"]))
    assert prompt == "<|user|>hello 0\n<|assistant|>hi 0\n<|user|>and?\n<|assistant|>"
    assert completion == "answer 0\n"


def test_classification_and_completion_formats(tmp_path, tokenizer_dir):
    rows = [{"sentence": f"film {i}", "label": i % 2} for i in range(6)]
    spec = {"path": "json", "data_files": str(write_jsonl(tmp_path / "c.jsonl", rows)),
            "format": "classification", "template": "Review: {sentence}\nSentiment:", "label": "label"}
    out = tmp_path / "c_out.jsonl"
    data.prepare(spec, tokenizer_dir, out, n_examples=100, seed=0)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 6
    assert all(g["prompt"].startswith("Review: film ") and g["completion"] in (" 0", " 1") for g in got)
    prompt, target = data.example({"document": "a b", "summary": "c"}, data.TASKS["xsum"], None, None)
    assert prompt == "Article: a b\nSummary:" and target == " c"


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown fine-tuning task 'nope'"):
        data.task_spec("nope", {})
    assert data.task_spec("mnli", {})["path"] == "nyu-mll/glue"
    assert data.task_spec("mine", {"mine": {"path": "json", "format": "hh"}})["format"] == "hh"
