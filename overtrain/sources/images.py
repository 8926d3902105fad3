"""An image modality for the synthetic language: pictures of sentences, for LLaVA-style fine-tuning.

Each image shows the start of a document, ``<t_k> w1 … w_{n-1}`` (`cells` tokens), as glyphs on a
grid: one glyph per token (topic tags and words each have their own), one cell of `cell` ×
`cell` pixels (one vision patch) per token, drawn in the topic's colour, plus Gaussian pixel
noise. A model has to read the image to know the tokens; what follows them is the language,
which is what pretraining taught the language model.

Rows, all in the language:
- continuation: the image as the start of a document → the words that follow it. The captions
  of LLaVA stage 1 (align the projector, language model frozen) are these: the text that goes
  with a picture here is the sentence it begins, which a frozen language model can score;
- transcription: the image and the ``<ft>`` tag (the instruction) → the pictured tokens;
- visual instructions (stage 2) mix continuations and transcriptions half and half;
- multiple choice: the image → which of 4 transcriptions it shows (the others differ in one
  word): reading the picture, scored by log-likelihood.

Splits go through `datasets` with an Image feature (parquet files), as hub image data does.
Everything is a pure function of the language and the seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from overtrain.sources.corpus import Language, walk

# split → what its rows are (sizes come from the config: multimodal.n)
SPLITS = {
    "captions": "continuation",  # stage 1 training
    "instruct": "mixed",  # stage 2 training
    "val": "mixed",  # chooses the stage-2 learning rate
    "test": "continuation",  # in-distribution loss
    "transcribe": "transcription",  # in-distribution loss of reading
    "mc": "choice",  # in-distribution accuracy of reading
}
TRANSCRIBE = "<ft>"


def glyph_bank(n_glyphs: int, cell: int, seed: int) -> np.ndarray:
    """(n_glyphs, cell, cell) bool: a distinct random pattern per token, inside a 1-pixel border."""
    rng = np.random.default_rng([seed, 7])
    inner = cell - 2
    bank = np.zeros((n_glyphs, cell, cell), bool)
    seen: set[bytes] = set()
    for w in range(n_glyphs):
        while True:
            pattern = rng.random((inner, inner)) < 0.5
            if pattern.tobytes() not in seen:
                break
        seen.add(pattern.tobytes())
        bank[w, 1:-1, 1:-1] = pattern
    return bank


def topic_colours(n_topics: int, seed: int) -> np.ndarray:
    """(n_topics, 3) RGB in [0.3, 1]: the colour a topic's glyphs are drawn in."""
    return np.random.default_rng([seed, 8]).uniform(0.3, 1.0, (n_topics, 3))


def grid_side(words: int) -> int:
    return math.isqrt(words - 1) + 1


def glyph_ids(lang: Language, topic: int, words) -> np.ndarray:
    """The glyphs of a document start: words first (0…V−1), then topic tags (V…V+K−1)."""
    return np.concatenate([[lang.n_words + topic], np.asarray(words, np.int64)])


def render(glyphs: np.ndarray, topic: int, bank: np.ndarray, colours: np.ndarray, noise: float,
           rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 image of `glyphs` (row-major on a square grid) in the topic's colour."""
    cell, side = bank.shape[1], grid_side(len(glyphs))
    image = np.zeros((side * cell, side * cell, 3))
    for i, w in enumerate(glyphs):
        r, c = divmod(i, side)
        image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = bank[w][..., None] * colours[topic]
    image += noise * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def sentences(lang: Language, n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(topics (n,), words (n, length)): walks of each topic's chain, as pretraining documents are."""
    topics = rng.choice(lang.n_topics, n, p=lang.topic_prior)
    start = rng.integers(0, lang.n_words, n)
    cum = np.cumsum(lang.weights, -1)
    return topics, walk(lang.successors[topics], cum[topics], start, length, rng)


def caption_text(lang: Language, topic: int, words) -> str:
    return " ".join([f"<t{topic}>"] + [f"w{int(w)}" for w in words])


def make_rows(lang: Language, kind: str, n: int, cells: int, continuation: int, noise: float, cell: int,
              glyph_seed: int, seed) -> list[dict]:
    """`n` rows of one kind (continuation | transcription | mixed | choice), images as uint8
    arrays. The glyphs and colours follow from `glyph_seed` (shared with the vision encoder), the rows from `seed`."""
    rng = np.random.default_rng(seed)
    bank = glyph_bank(lang.n_words + lang.n_topics, cell, glyph_seed)
    colours = topic_colours(lang.n_topics, glyph_seed)
    words = cells - 1
    topics, walks = sentences(lang, n, words + continuation, rng)
    rows = []
    for topic, sentence in zip(topics.tolist(), walks):
        shown = sentence[:words]
        row = {"image": render(glyph_ids(lang, topic, shown), topic, bank, colours, noise, rng), "topic": topic}
        if kind == "mixed":
            kind_here = "continuation" if rng.random() < 0.5 else "transcription"
        else:
            kind_here = kind
        if kind_here == "continuation":
            row.update(prompt="", completion=" ".join(f"w{int(w)}" for w in sentence[words:]))
        elif kind_here == "transcription":
            row.update(prompt=TRANSCRIBE, completion=caption_text(lang, topic, shown))
        elif kind_here == "choice":
            choices = [caption_text(lang, topic, shown)]
            while len(choices) < 4:  # one word changed: only the picture tells them apart
                other = shown.copy()
                other[rng.integers(words)] = rng.integers(lang.n_words)
                if caption_text(lang, topic, other) not in choices:
                    choices.append(caption_text(lang, topic, other))
            order = rng.permutation(4)
            row.update(prompt=TRANSCRIBE, choices=[choices[i] for i in order],
                       gold=int(np.flatnonzero(order == 0)[0]))
        else:
            raise ValueError(f"unknown row kind {kind!r}; allowed: continuation, transcription, mixed, choice")
        rows.append(row)
    return rows


def to_dataset(rows: list[dict]):
    """A `datasets.Dataset` with an Image feature (PIL images from the uint8 arrays)."""
    import datasets
    from PIL import Image

    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["image"] = [Image.fromarray(a) for a in columns["image"]]
    features = {"image": datasets.Image(), "topic": datasets.Value("int64"), "prompt": datasets.Value("string")}
    if "completion" in columns:
        features["completion"] = datasets.Value("string")
    if "choices" in columns:
        features.update(choices=datasets.Sequence(datasets.Value("string")), gold=datasets.Value("int64"))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def write_data(lang: Language, out_dir: str | Path, sizes: dict[str, int], *, cells: int, continuation: int,
               noise: float, cell: int, seed: int) -> dict:
    """Every split (SPLITS) as `<split>.parquet` in `out_dir`, written atomically; returns meta."""
    from overtrain.atomic import atomic_directory, atomic_write_json

    meta = {"sizes": sizes, "cells": cells, "continuation": continuation, "noise": noise, "cell": cell,
            "seed": seed, "image_size": grid_side(cells) * cell}
    with atomic_directory(out_dir) as tmp:
        for i, (split, kind) in enumerate(SPLITS.items()):
            rows = make_rows(lang, kind, sizes[split], cells, continuation, noise, cell, seed, [seed, i])
            to_dataset(rows).to_parquet(str(Path(tmp, f"{split}.parquet")))
        atomic_write_json(Path(tmp, "meta.json"), meta)
    return meta


def load_split(data_dir: str | Path, split: str):
    """One split as a `datasets.Dataset` (images decoded to PIL by the Image feature)."""
    import datasets

    path = Path(data_dir, f"{split}.parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such split; the data directory has "
                                f"{sorted(p.stem for p in Path(data_dir).glob('*.parquet'))}")
    return datasets.load_dataset("parquet", data_files=str(path), split="train")



# --- real image-text data (task llava): LLaVA conversations with an Image feature ---------------

def load_source(source: dict):
    """A dataset with an image column: {repo, revision, split} on the Hub (through `datasets`, the
    revision pinned), or {path: <parquet file>} with a `datasets` Image feature."""
    import datasets

    if "path" in source:
        return datasets.load_dataset("parquet", data_files=str(source["path"]), split="train")
    return datasets.load_dataset(source["repo"], source.get("name"), revision=source["revision"],
                                 split=source.get("split", "train"))


def first_exchange(conversations, where: str) -> tuple[str, str]:
    """(prompt, response) of a LLaVA conversation's first human → gpt turn, without its <image>
    placeholder (the model's image positions are added by overtrain.training.llava). Accepts a list
    of {from, value} or {role, content}, or that list as a JSON string."""
    import json

    turns = json.loads(conversations) if isinstance(conversations, str) else conversations
    texts = [((t.get("from") or t.get("role") or ""), (t.get("value") or t.get("content") or "")) for t in turns or []]
    for (who, text), (who_next, reply) in zip(texts, texts[1:]):
        if who in ("human", "user") and who_next in ("gpt", "assistant") and reply.strip():
            return text.replace("<image>", "").strip(), reply.strip()
    raise ValueError(f"{where}: no human turn followed by a non-empty gpt turn in its conversations")


def import_conversations(out_dir: str | Path, spec: dict, seed: int) -> dict:
    """The LLaVA recipe's data as this module's splits: `captions` (stage 1) from spec['captions'],
    `instruct` (stage 2) from spec['instruct'] minus a seeded hold-out of n_val + n_test rows for
    `val` (chooses the learning rate) and `test` (in-distribution response loss)."""
    import datasets

    from overtrain.atomic import atomic_directory, atomic_write_json

    def rows(source: dict, data, indices, name: str):
        """The selected rows as (image, prompt, completion), images left encoded (on disk, not in
        memory: the real sets hold hundreds of thousands)."""
        image, conversations = source.get("image", "image"), source.get("conversations", "conversations")
        if image not in data.column_names or conversations not in data.column_names:
            raise ValueError(f"multimodal.data.{name}: columns {data.column_names}; expected {image!r} (an image) "
                             f"and {conversations!r} (LLaVA conversations); set 'image' / 'conversations'")
        data = data.cast_column(image, datasets.Image(decode=False)).select([int(i) for i in indices])
        where = source.get("repo") or source.get("path")

        def one(row, i):
            if row[image] is None:
                raise ValueError(f"{where} row {int(indices[i])}: no image in column {image!r}")
            prompt, response = first_exchange(row[conversations], f"{where} row {int(indices[i])}")
            return {"prompt": prompt, "completion": response}

        out = data.map(one, with_indices=True, remove_columns=[c for c in data.column_names if c != image])
        out = out.rename_column(image, "image") if image != "image" else out
        if len(out) == 0:
            raise ValueError(f"multimodal.data.{name}: no rows")
        return out.cast_column("image", datasets.Image())

    rng = np.random.default_rng(seed)
    captions, instruct = load_source(spec["captions"]), load_source(spec["instruct"])
    n_captions = min(spec["captions"]["n"], len(captions))  # the first n, in order
    instruct_all = rng.permutation(len(instruct))
    held = spec["n_val"] + spec["n_test"]
    if len(instruct_all) <= held:
        raise ValueError(f"multimodal.data.instruct: {len(instruct_all)} rows, but n_val + n_test = {held} are held out")
    splits = {
        "captions": rows(spec["captions"], captions, range(n_captions), "captions"),
        "val": rows(spec["instruct"], instruct, instruct_all[: spec["n_val"]], "instruct"),
        "test": rows(spec["instruct"], instruct, instruct_all[spec["n_val"]:held], "instruct"),
        "instruct": rows(spec["instruct"], instruct, instruct_all[held: held + spec["instruct"]["n"]], "instruct"),
    }
    meta = {"sizes": {k: len(v) for k, v in splits.items()}, "seed": seed,
            "sources": {k: spec[k] for k in ("captions", "instruct")}}
    with atomic_directory(out_dir) as tmp:
        for split, split_rows in splits.items():
            split_rows.to_parquet(str(Path(tmp, f"{split}.parquet")))
        atomic_write_json(Path(tmp, "meta.json"), meta)
    return meta
