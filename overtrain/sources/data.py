"""Fine-tuning data from `datasets`, rendered to prompt/completion JSONL for overtrain.training.finetune,
in three disjoint parts: train, val (chooses the learning rate) and test (what is reported).

Test is the dataset's own held-out split where it has one with public labels (`test_split`),
else a seeded hold-out of the training split; val is always a seeded hold-out of the training
split, disjoint from the examples trained on. Instruction data (Anthropic-HH chosen responses,
TULU v2 messages, Alpaca) goes through the tokenizer's chat template when it has one, else a
plain "### Instruction / ### Response" template; the loss is on the last assistant response only.
Classification sets become prompt → label text, with the label names as the choices of a
multiple-choice evaluation and two more prompt formats (an instruction, the raw inputs) for
prompt sensitivity (Amuro & Char's default / instruct / input-output formats).

A row that cannot be rendered (invalid JSON, a missing field, an empty response, no assistant
turn) is refused before any training, naming the file and its 1-based line (or the row index
of a Hub dataset); `skip_bad_rows` drops such rows instead and counts them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from overtrain.atomic import atomic_write_json, atomic_write_text

# Known tasks; a config's finetune.datasets can add or override entries (e.g. local JSONL).
TASKS: dict[str, dict] = {
    "anthropic_hh": {"path": "Anthropic/hh-rlhf", "split": "train", "test_split": "test", "format": "hh"},
    "tulu_v2": {"path": "allenai/tulu-v2-sft-mixture", "split": "train", "format": "messages"},
    "alpaca": {"path": "tatsu-lab/alpaca", "split": "train", "format": "alpaca"},
    "mnli": {
        "path": "nyu-mll/glue", "name": "mnli", "split": "train", "test_split": "validation_matched",
        "format": "classification", "label": "label",
        "template": "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?",
        "variants": {"instruct": "Consider the following texts: Text 1: {premise} Text 2: {hypothesis} The relation is",
                     "raw": "{premise} {hypothesis}"},
    },
    "rte": {
        "path": "nyu-mll/glue", "name": "rte", "split": "train", "test_split": "validation",
        "format": "classification", "label": "label",
        "template": "{sentence1}\nQuestion: does this imply \"{sentence2}\"?",
        "variants": {"instruct": "Does the first text imply the second? Text 1: {sentence1} Text 2: {sentence2} Answer:",
                     "raw": "{sentence1} {sentence2}"},
    },
    "sst2": {
        "path": "nyu-mll/glue", "name": "sst2", "split": "train", "test_split": "validation",
        "format": "classification", "label": "label",
        "template": "Review: {sentence}\nSentiment:",
        "variants": {"instruct": "Is the sentiment of this review positive or negative? {sentence} Answer:",
                     "raw": "{sentence}"},
    },
    "trec": {
        "path": "CogComp/trec", "split": "train", "test_split": "test", "format": "classification",
        "label": "coarse_label", "template": "Question: {text}\nQuestion type:",
        "variants": {"instruct": "What kind of answer does this question ask for? {text} Type:", "raw": "{text}"},
    },
    "paws": {
        "path": "google-research-datasets/paws", "name": "labeled_final", "split": "train", "test_split": "test",
        "format": "classification", "label": "label", "label_names": ["no", "yes"],
        "template": "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nParaphrase?",
        "variants": {"instruct": "Let's compare the two sentences: Sentence 1: {sentence1} Sentence 2: {sentence2} "
                                 "Are they paraphrasing?", "raw": "{sentence1} {sentence2}"},
    },
    "social_i_qa": {
        "path": "allenai/social_i_qa", "split": "train", "test_split": "validation", "format": "classification",
        "label": "label", "label_names": {"1": "A", "2": "B", "3": "C"},
        "template": "{context}\nQuestion: {question}\nA: {answerA}\nB: {answerB}\nC: {answerC}\nAnswer:",
        "variants": {"instruct": "Read the situation and pick the best answer (A, B or C). {context} {question} "
                                 "A: {answerA} B: {answerB} C: {answerC} Answer:",
                     "raw": "{context} {question} A: {answerA} B: {answerB} C: {answerC}"},
    },
    # Amuro & Char's SocialIQa task is question generation: the context and answers → the question
    "social_i_qa_qg": {
        "path": "allenai/social_i_qa", "split": "train", "test_split": "validation", "format": "completion",
        "template": "Context: {context}\nAnswers: {answerA} / {answerB} / {answerC}\nQuestion:",
        "target": " {question}",
    },
    "xsum": {
        "path": "EdinburghNLP/xsum", "split": "train", "test_split": "test", "format": "completion",
        "template": "Article: {document}\nSummary:", "target": " {summary}",
    },
}
FORMATS = ("hh", "messages", "alpaca", "classification", "completion")


def hh_messages(text: str) -> list[dict]:
    """Anthropic-HH's '\\n\\nHuman: … \\n\\nAssistant: …' transcript → chat messages (a final
    empty 'Assistant:' stays an empty assistant turn, never glued to the human turn)."""
    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + text.strip())
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[parts[i]], "content": parts[i + 1].strip()}
        for i in range(1, len(parts) - 1, 2)
    ]


class BadRow(ValueError):
    """A row that cannot become a training example; the message says why."""


def render_chat(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt, completion): all turns before the last assistant reply, and that reply."""
    replies = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not replies:
        raise BadRow("no assistant turn")
    last = replies[-1]
    context, reply = messages[:last], messages[last].get("content") or ""
    if not reply.strip():
        raise BadRow("the last assistant turn is empty")
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages[: last + 1], tokenize=False)
        if not full.startswith(prompt):
            raise BadRow("the tokenizer's chat template does not render the prompt as a prefix of the whole chat")
        return prompt, full[len(prompt) :]
    eos = tokenizer.eos_token or ""
    return plain_template(context), reply + eos


def plain_template(messages: list[dict]) -> str:
    """The plain chat template (for tokenizers without their own): every user and assistant turn
    as "### Instruction:" / "### Response:", then the response header the model continues."""
    turns = "".join(f"### {'Instruction' if m['role'] == 'user' else 'Response'}:\n{m['content']}\n\n"
                    for m in messages if m.get("role") in ("user", "assistant"))
    return turns + "### Response:\n"


def label_text(value, spec: dict, label_names) -> str:
    names = spec.get("label_names") or label_names
    if isinstance(names, dict):
        return names[str(value)]
    if names:
        return names[int(value)]
    return str(value)


CHAT_FORMATS = ("hh", "messages", "alpaca")


def chat_messages(row: dict, spec: dict) -> list[dict]:
    """An instruction row as chat messages (formats hh, messages, alpaca)."""
    fmt = spec["format"]
    if fmt == "hh":
        return hh_messages(row[spec.get("field", "chosen")] or "")
    if fmt == "messages":
        return list(row[spec.get("field", "messages")] or [])
    if not (row.get("output") or "").strip():
        raise BadRow("empty 'output'")
    user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def last_instruction(messages: list[dict]) -> str:
    """The user turn the last assistant reply answers (the prompt a judge sees)."""
    last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    users = [m["content"] for m in messages[:last] if m.get("role") == "user"]
    return users[-1] if users else ""


def example(row: dict, spec: dict, tokenizer, label_names: list[str] | None) -> tuple[str, str]:
    """(prompt, completion) of one row in the task's format; BadRow if it has none."""
    fmt = spec["format"]
    try:
        if fmt in CHAT_FORMATS:
            return render_chat(tokenizer, chat_messages(row, spec))
        if fmt == "classification":
            return spec["template"].format(**row), " " + label_text(row[spec["label"]], spec, label_names)
        if fmt == "completion":
            target = spec["target"].format(**row)
            if not target.strip():
                raise BadRow("empty target")
            return spec["template"].format(**row), target
    except KeyError as e:
        raise BadRow(f"missing field {e}") from None
    except (IndexError, ValueError, TypeError) as e:
        raise BadRow(str(e)) from None
    raise ValueError(f"unknown format {fmt!r}; allowed: {FORMATS}")


def task_spec(task: str, overrides: dict) -> dict:
    if task in overrides:
        return {**TASKS.get(task, {}), **overrides[task]}
    if task in TASKS:
        return TASKS[task]
    raise ValueError(f"unknown fine-tuning task {task!r}; known: {sorted(TASKS)} or finetune.datasets")


def check_local_jsonl(files) -> None:
    """Every line of local JSONL data files parses, or the error names the file and 1-based line
    (datasets would report a 0-based row deep in a traceback)."""
    paths = [files] if isinstance(files, str) else list(files.values()) if isinstance(files, dict) else list(files)
    for path in paths:
        for f in ([path] if isinstance(path, str) else path):
            if not str(f).endswith((".jsonl", ".json")) or not Path(f).is_file():
                continue
            with open(f) as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{f}:{n}: not valid JSON ({e.msg}); fix or remove that line") from None


def _load(spec: dict, split: str):
    import datasets

    if "data_files" in spec:
        check_local_jsonl(spec["data_files"])
        files = spec["data_files"]
        # one local file: the named split is that file (a dict maps splits to files)
        kwargs = {"data_files": files if isinstance(files, dict) else {split: files}}
        return datasets.load_dataset(spec["path"], spec.get("name"), split=split, **kwargs)
    if spec.get("load_from_disk"):
        return datasets.load_from_disk(str(Path(spec["load_from_disk"]) / split))
    return datasets.load_dataset(spec["path"], spec.get("name"), split=split)


def _where(spec: dict, split: str, index: int) -> str:
    """A bad row's address: file and 1-based line for a local JSONL file, else the row index."""
    files = spec.get("data_files")
    if isinstance(files, str):
        return f"{files}:{index + 1}"
    if isinstance(files, dict) and isinstance(files.get(split), str):
        return f"{files[split]}:{index + 1}"
    return f"{spec.get('path')} split {split!r} row {index}"


def prepare(
    spec: dict,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    n_examples: int,
    seed: int,
    n_val: int = 0,
    n_test: int = 0,
    skip_bad_rows: bool = False,
) -> dict:
    """Write train.jsonl, val.jsonl, test.jsonl and meta.json into `out_dir`; returns meta.

    Rows are drawn in a seeded permutation; the train split gives n_examples training rows and
    then n_val validation rows (and n_test test rows when the dataset has no test split).
    val/test rows also carry `n_target` (response tokens) and, for classification, `choices`,
    `gold` and the prompt in each variant format.
    """
    import numpy as np

    from overtrain.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    split = spec.get("split", "train")
    source = _load(spec, split)
    feature = source.features.get(spec.get("label", ""))
    label_names = getattr(feature, "names", None)
    if spec["format"] == "classification" and not (label_names or spec.get("label_names")):
        # plain values (a local file): the labels seen are the choices
        label_names = {str(v): str(v) for v in sorted({str(x) for x in source[spec["label"]]})}
    counts = {"bad_rows": 0, "bad_examples": []}

    def rows_from(ds, which: str, n: int, perm, skip: int = 0) -> tuple[list[dict], int]:
        """The first n good rows of ds in the order `perm` after `skip` used positions."""
        out, pos = [], skip
        while len(out) < n and pos < len(perm):
            index = int(perm[pos])
            pos += 1
            row = ds[index]
            try:
                prompt, completion = example(row, spec, tokenizer, label_names)
            except BadRow as e:
                where = _where(spec, which, index)
                if not skip_bad_rows:
                    raise ValueError(f"{where}: {e} — fix the row, or set finetune.skip_bad_rows: true to drop "
                                     "such rows (they are counted)") from None
                counts["bad_rows"] += 1
                counts["bad_examples"] = (counts["bad_examples"] + [f"{where}: {e}"])[:20]
                continue
            out.append(_row(row, prompt, completion, spec, tokenizer, label_names))
        return out, pos

    perm = np.random.default_rng(seed).permutation(len(source))
    train, used = rows_from(source, split, n_examples, perm)
    val, used = rows_from(source, split, n_val, perm, used)
    if spec.get("test_split"):
        test_source = _load(spec, spec["test_split"])
        test_perm = np.random.default_rng([seed, 1]).permutation(len(test_source))
        test, _ = rows_from(test_source, spec["test_split"], n_test, test_perm)
    else:
        test, used = rows_from(source, split, n_test, perm, used)
    if not train:
        raise ValueError(f"{spec.get('path')}: no usable training example")
    for name, n, got in (("val", n_val, val), ("test", n_test, test)):
        if n and not got:
            raise ValueError(f"{spec.get('path')}: no {name} example left after {len(train)} training examples; "
                             "lower finetune.n_examples (or n_val / n_test)")
        if len(got) < n:
            print(f"warning: only {len(got)} of {n} {name} examples available")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("val", val), ("test", test)):
        keep = ("prompt", "completion") if name == "train" else None
        text = "".join(json.dumps({k: v for k, v in r.items() if keep is None or k in keep}) + "\n" for r in rows)
        atomic_write_text(out / f"{name}.jsonl", text)
    meta = {"train": len(train), "val": len(val), "test": len(test),
            "test_source": spec.get("test_split") or f"hold-out of {split}", "val_source": f"hold-out of {split}",
            "format": spec["format"], "seed": seed, **counts}
    atomic_write_json(out / "meta.json", meta)
    return meta


def _row(row: dict, prompt: str, completion: str, spec: dict, tokenizer, label_names) -> dict:
    out = {"prompt": prompt, "completion": completion,
           "n_target": len(tokenizer(completion, add_special_tokens=False)["input_ids"])}
    if spec["format"] in CHAT_FORMATS:
        out["instruction"] = last_instruction(chat_messages(row, spec))
    if spec["format"] == "classification":
        names = spec.get("label_names") or label_names
        values = list(names.values()) if isinstance(names, dict) else list(names or [])
        if values:
            out["choices"] = [" " + v for v in values]
            out["gold"] = out["choices"].index(completion)
        for variant, template in spec.get("variants", {}).items():
            out[f"prompt_{variant}"] = template.format(**row)
    return out
