"""Supervised fine-tuning data: prompt/completion examples → token ids and labels, the step-indexed
batch order (length-grouped, so instruction data is not mostly padding) and per-batch collation.

Truncation keeps the supervision: an example longer than `max_len` loses the start of its
prompt; one whose response alone does not fit is dropped. Both are counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from overtrain.training.loop import IGNORE


def read_examples(path: str | Path) -> list[tuple[str, str]]:
    """Fine-tuning examples from JSONL: {"prompt", "completion"} (loss on the completion) or
    {"text"} (loss on everything)."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "text" in r:
                rows.append(("", r["text"]))
            elif "prompt" in r and "completion" in r:
                rows.append((r["prompt"], r["completion"]))
            else:
                raise ValueError(f"{path}:{n}: expected keys 'text' or 'prompt'+'completion'")
    if not rows:
        raise ValueError(f"{path}: no fine-tuning examples")
    return rows


@dataclass
class Encoded:
    """Token ids and labels per example (unpadded), and what truncation did."""

    ids: list[list[int]]
    labels: list[list[int]]
    pad_id: int
    truncated: int = 0  # prompts cut from the left
    dropped: int = 0  # examples whose response alone does not fit
    kept: list[int] = field(default_factory=list)  # the input examples these are, in order

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]


def encode_examples(tokenizer, examples: list[tuple[str, str]], max_len: int) -> Encoded:
    """Token ids and labels (IGNORE on <bos> and the prompt) for each example.

    A prompt that would push the example past `max_len` is cut from the left (the end of a
    prompt is what the response answers); an example whose <bos> + response is longer than
    `max_len` is dropped. A literal BOS that a chat template already put in the prompt is not
    doubled.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids_list, label_list, kept, truncated, dropped = [], [], [], 0, 0
    for index, (prompt, completion) in enumerate(examples):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if bos and p[:1] == bos:
            p = p[1:]
        if not c or len(bos) + len(c) > max_len:
            dropped += 1
            continue
        room = max_len - len(bos) - len(c)
        if len(p) > room:
            p = p[len(p) - room :] if room else []
            truncated += 1
        ids_list.append(bos + p + c)
        label_list.append([IGNORE] * (len(bos) + len(p)) + c)
        kept.append(index)
    if not ids_list:
        raise ValueError(
            f"no fine-tuning example fits max_length={max_len} tokens ({dropped} responses are longer); "
            "raise finetune.max_length"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(ids_list, label_list, pad, truncated, dropped, kept=kept)


def finetune_steps(n_examples: int, batch_size: int, steps: int | None, epochs: float | None) -> int:
    """Steps of a fine-tune given either a step budget or a number of epochs."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of finetune.steps and finetune.epochs")
    return steps if steps is not None else max(1, math.ceil(epochs * n_examples / batch_size))


def replicate_seed(seed: int, checkpoint_dir: str | Path) -> int:
    """The seed of a fine-tune's data order and initial randomness. A checkpoint of the controlled
    study is one pretraining replicate, and a replicate repeats the whole pipeline: it is
    fine-tuned with its own draw of (seed, pretraining seed). With one order shared by every
    replicate, the intervals over replicates missed the data order, and a claim about the
    training curve (the learning jump) was decided by which batches happened to come first.
    Hub and local checkpoints (no pretraining seed) use `seed` itself."""
    meta = Path(checkpoint_dir, "meta.json")
    pretrain_seed = json.loads(meta.read_text()).get("pretrain_seed") if meta.exists() else None
    if pretrain_seed is None:
        return seed
    return int(np.random.SeedSequence([seed, pretrain_seed]).generate_state(1)[0])


def batch_order(
    lengths: list[int], batch_size: int, total_steps: int, seed: int, group_by_length: bool = True, window: int = 8
) -> np.ndarray:
    """(total_steps, batch_size) example indices: a fresh permutation per epoch, concatenated.

    With `group_by_length`, each window of `window` consecutive batches is sorted by length,
    cut into batches and those batches shuffled: batches hold examples of similar length (little
    padding) while every example is still seen once per epoch and the order is a pure function
    of the seed.
    """
    n = len(lengths)
    rng = np.random.default_rng(seed)
    flat = np.concatenate([rng.permutation(n) for _ in range(math.ceil(total_steps * batch_size / n))])
    flat = flat[: total_steps * batch_size].reshape(total_steps, batch_size)
    if not group_by_length:
        return flat
    lens = np.asarray(lengths)
    out = flat.copy()
    for start in range(0, total_steps, window):
        block = flat[start : start + window].reshape(-1)
        block = block[np.argsort(lens[block], kind="stable")].reshape(-1, batch_size)
        out[start : start + len(block)] = block[rng.permutation(len(block))]
    return out


def collate(encoded: Encoded, indices, pad_to: int | None = None) -> dict:
    """Right-padded tensors of the given examples, as wide as the longest of them (or `pad_to`)."""
    import torch

    rows = [encoded.ids[i] for i in indices]
    width = pad_to or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), encoded.pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, i in enumerate(indices):
        x, y = encoded.ids[i], encoded.labels[i]
        ids[k, : len(x)] = torch.tensor(x)
        labels[k, : len(y)] = torch.tensor(y)
        mask[k, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def split_micro(indices, parts: int) -> list:
    """Contiguous, equal slices of a step's indices (a rank's share, or its micro-batches)."""
    size = len(indices) // parts
    return [indices[k * size : (k + 1) * size] for k in range(parts)]
