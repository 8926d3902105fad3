"""Fine-tuning data through `datasets`, from local JSONL (offline)."""

import json

import pytest

from overtrain.sources import corpus, data


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


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hh_plain_template_loss_on_last_reply(tmp_path, tokenizer_dir):
    src = write_jsonl(tmp_path / "hh.jsonl", HH)
    spec = {"path": "json", "data_files": str(src), "format": "hh"}
    meta = data.prepare(spec, tokenizer_dir, tmp_path / "out", n_examples=5, seed=0, n_val=3, n_test=4)
    assert (meta["train"], meta["val"], meta["test"]) == (5, 3, 4)
    rows = read(tmp_path / "out" / "train.jsonl")
    for r in rows:
        assert r["prompt"].startswith("### Instruction:\nhello ")
        assert r["prompt"].endswith("### Response:\n")
        assert r["completion"].startswith("answer ") and r["completion"].endswith("<eos>")
    data.prepare(spec, tokenizer_dir, tmp_path / "again", n_examples=5, seed=0, n_val=3, n_test=4)
    for part in ("train", "val", "test"):  # same seed, same subsample
        assert (tmp_path / "again" / f"{part}.jsonl").read_text() == (tmp_path / "out" / f"{part}.jsonl").read_text()
    data.prepare(spec, tokenizer_dir, tmp_path / "other", n_examples=5, seed=1, n_val=3, n_test=4)
    assert (tmp_path / "other" / "train.jsonl").read_text() != (tmp_path / "out" / "train.jsonl").read_text()


def test_train_val_and_test_are_disjoint(tmp_path, tokenizer_dir):
    src = write_jsonl(tmp_path / "hh.jsonl", HH)
    spec = {"path": "json", "data_files": str(src), "format": "hh"}
    meta = data.prepare(spec, tokenizer_dir, tmp_path / "out", n_examples=10, seed=0, n_val=5, n_test=5)
    parts = {p: {r["completion"] for r in read(tmp_path / "out" / f"{p}.jsonl")} for p in ("train", "val", "test")}
    assert [len(v) for v in parts.values()] == [10, 5, 5]
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])
    assert meta["test_source"] == "hold-out of train"
    val = read(tmp_path / "out" / "val.jsonl")
    assert all(r["n_target"] > 0 for r in val)


def test_a_labelled_test_split_is_the_test_set(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": f"film {i}", "label": i % 2} for i in range(20)])
    test = write_jsonl(tmp_path / "test.jsonl", [{"sentence": f"movie {i}", "label": i % 2} for i in range(6)])
    spec = {"path": "json", "data_files": {"train": str(train), "test": str(test)}, "split": "train",
            "test_split": "test", "format": "classification", "template": "Review: {sentence}\nSentiment:",
            "label": "label", "label_names": ["bad", "good"], "variants": {"raw": "{sentence}"}}
    meta = data.prepare(spec, tokenizer_dir, tmp_path / "out", n_examples=15, seed=0, n_val=5, n_test=10)
    assert (meta["train"], meta["val"], meta["test"]) == (15, 5, 6) and meta["test_source"] == "test"
    rows = read(tmp_path / "out" / "test.jsonl")
    assert all(r["prompt"].startswith("Review: movie ") for r in rows)
    assert all(r["choices"] == [" bad", " good"] and r["choices"][r["gold"]] == r["completion"] for r in rows)
    assert all(r["prompt_raw"].startswith("movie ") for r in rows)


def test_bad_rows_are_refused_with_their_line_or_skipped_and_counted(tmp_path, tokenizer_dir):
    lines = [json.dumps(r) for r in HH[:10]]
    lines[3] = '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant:"}'  # an empty last reply
    lines[6] = '{"chosen": "\\n\\nHuman: only a question"}'  # no assistant turn
    src = tmp_path / "hh.jsonl"
    src.write_text("\n".join(lines) + "\n")
    spec = {"path": "json", "data_files": str(src), "format": "hh"}
    with pytest.raises(ValueError, match=r"hh.jsonl:(4|7): .*(empty|no assistant turn).*skip_bad_rows"):
        data.prepare(spec, tokenizer_dir, tmp_path / "out", n_examples=8, seed=0, n_val=0, n_test=0)
    assert not (tmp_path / "out").exists()
    meta = data.prepare(spec, tokenizer_dir, tmp_path / "out", n_examples=8, seed=0, skip_bad_rows=True)
    assert meta["train"] == 8 and meta["bad_rows"] == 2
    assert {e.split(": ")[0] for e in meta["bad_examples"]} == {f"{src}:4", f"{src}:7"}
    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        data.prepare({**spec, "data_files": str(broken)}, tokenizer_dir, tmp_path / "b", n_examples=1, seed=0)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"text": "no chosen field"}])
    with pytest.raises(ValueError, match=r"missing.jsonl:1: missing field 'chosen'"):
        data.prepare({**spec, "data_files": str(missing)}, tokenizer_dir, tmp_path / "m", n_examples=1, seed=0)


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
    data.prepare(spec, tokenizer_dir, tmp_path / "c_out", n_examples=4, seed=0, n_val=1, n_test=1)
    got = read(tmp_path / "c_out" / "train.jsonl")
    assert len(got) == 4
    assert all(g["prompt"].startswith("Review: film ") and g["completion"] in (" 0", " 1") for g in got)
    assert read(tmp_path / "c_out" / "test.jsonl")[0]["choices"] == [" 0", " 1"]
    prompt, target = data.example({"document": "a b", "summary": "c"}, data.TASKS["xsum"], None, None)
    assert prompt == "Article: a b\nSummary:" and target == " c"


def test_an_empty_final_assistant_turn_is_not_glued_to_the_question():
    msgs = data.hh_messages("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[2]["content"] == "bye" and msgs[3]["content"] == ""


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown fine-tuning task 'nope'"):
        data.task_spec("nope", {})
    assert data.task_spec("mnli", {})["path"] == "nyu-mll/glue"
    assert data.task_spec("mine", {"mine": {"path": "json", "format": "hh"}})["format"] == "hh"
