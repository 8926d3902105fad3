"""Fine-tuning data from `datasets`, rendered to prompt/completion JSONL for overtrain.train.

Instruction data (Anthropic-HH chosen responses, TULU v2 messages, Alpaca) goes through the
tokenizer's chat template when it has one, else a plain "### Instruction / ### Response" template;
the loss is on the last assistant response only. Classification sets become prompt → label
text. Each set is subsampled to `n_examples` with a seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from overtrain.atomic import atomic_write_text

# Known tasks; a config's finetune.datasets can add or override entries (e.g. local JSONL).
TASKS: dict[str, dict] = {
    "anthropic_hh": {"path": "Anthropic/hh-rlhf", "split": "train", "format": "hh"},
    "tulu_v2": {"path": "allenai/tulu-v2-sft-mixture", "split": "train", "format": "messages"},
    "alpaca": {"path": "tatsu-lab/alpaca", "split": "train", "format": "alpaca"},
    "mnli": {
        "path": "nyu-mll/glue", "name": "mnli", "split": "train", "format": "classification",
        "template": "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis?",
        "label": "label",
    },
    "rte": {
        "path": "nyu-mll/glue", "name": "rte", "split": "train", "format": "classification",
        "template": "{sentence1}\nQuestion: does this imply \"{sentence2}\"?", "label": "label",
    },
    "sst2": {
        "path": "nyu-mll/glue", "name": "sst2", "split": "train", "format": "classification",
        "template": "Review: {sentence}\nSentiment:", "label": "label",
    },
    "trec": {
        "path": "CogComp/trec", "split": "train", "format": "classification",
        "template": "Question: {text}\nQuestion type:", "label": "coarse_label",
    },
    "paws": {
        "path": "google-research-datasets/paws", "name": "labeled_final", "split": "train",
        "format": "classification",
        "template": "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nParaphrase?", "label": "label",
    },
    "social_i_qa": {
        "path": "allenai/social_i_qa", "split": "train", "format": "completion",
        "template": "{context}\nQuestion: {question}\n1: {answerA}\n2: {answerB}\n3: {answerC}\nAnswer:",
        "target": " {label}",
    },
    "xsum": {
        "path": "EdinburghNLP/xsum", "split": "train", "format": "completion",
        "template": "Article: {document}\nSummary:", "target": " {summary}",
    },
}
FORMATS = ("hh", "messages", "alpaca", "classification", "completion")


def hh_messages(text: str) -> list[dict]:
    """Anthropic-HH's '\\n\\nHuman: … \\n\\nAssistant: …' transcript → chat messages."""
    parts = re.split(r"\n\n(Human|Assistant): ", "\n\n" + text.strip())
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[parts[i]], "content": parts[i + 1].strip()}
        for i in range(1, len(parts) - 1, 2)
    ]


def render_chat(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt, completion): all turns before the last assistant reply, and that reply."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    context, reply = messages[:last], messages[last]["content"]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages[: last + 1], tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt) :]
    turns = "".join(
        f"### {'Instruction' if m['role'] == 'user' else 'Response'}:\n{m['content']}\n\n"
        for m in context
        if m["role"] in ("user", "assistant")
    )
    eos = tokenizer.eos_token or ""
    return turns + "### Response:\n", reply + eos


def example(row: dict, spec: dict, tokenizer, label_names: list[str] | None) -> tuple[str, str]:
    fmt = spec["format"]
    if fmt == "hh":
        return render_chat(tokenizer, hh_messages(row[spec.get("field", "chosen")]))
    if fmt == "messages":
        return render_chat(tokenizer, row[spec.get("field", "messages")])
    if fmt == "alpaca":
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        return render_chat(tokenizer, msgs)
    if fmt == "classification":
        value = row[spec["label"]]
        label = label_names[int(value)] if label_names else str(value)
        return spec["template"].format(**row), " " + label
    if fmt == "completion":
        return spec["template"].format(**row), spec["target"].format(**row)
    raise ValueError(f"unknown format {fmt!r}; allowed: {FORMATS}")


def task_spec(task: str, overrides: dict) -> dict:
    if task in overrides:
        return {**TASKS.get(task, {}), **overrides[task]}
    if task in TASKS:
        return TASKS[task]
    raise ValueError(f"unknown fine-tuning task {task!r}; known: {sorted(TASKS)} or finetune.datasets")


def prepare(
    spec: dict, tokenizer_dir: str | Path, out_jsonl: str | Path, n_examples: int, seed: int
) -> int:
    """Load, subsample, render and write one fine-tuning set; returns the number of examples."""
    import datasets

    from overtrain.models import load_tokenizer

    kwargs = {"data_files": spec["data_files"]} if "data_files" in spec else {}
    ds = datasets.load_dataset(spec["path"], spec.get("name"), split=spec.get("split", "train"), **kwargs)
    ds = ds.shuffle(seed=seed).select(range(min(n_examples, len(ds))))
    label_names = None
    if spec["format"] == "classification":
        feature = ds.features.get(spec["label"])
        label_names = getattr(feature, "names", None)
    tokenizer = load_tokenizer(tokenizer_dir)
    rows = []
    for row in ds:
        prompt, completion = example(row, spec, tokenizer, label_names)
        rows.append(json.dumps({"prompt": prompt, "completion": completion}))
    atomic_write_text(out_jsonl, "\n".join(rows) + "\n")
    return len(rows)
