"""A synthetic language to pretrain tiny models on, and a related-but-shifted fine-tuning task.

Why synthetic: on a laptop CPU we need a language that a 100k-parameter model keeps learning for
millions of tokens, so that "more pretraining" means something. The language is a mixture of
K topics with a Zipf prior; each topic is a sparse first-order Markov chain over V words (every
word has `fanout` successors with Dirichlet weights). A fraction `shared` of the rows is common
to all topics (the "grammar"), the rest is topic specific (the "facts", with a long tail).

A pretraining document is ``<bos> <t_k> w w w ...``. The fine-tuning task is tagged ``<ft>`` and
follows the chain of topic `ft_source_topic` with a fraction `ft_shift` of its rows resampled:
related to pretraining, but shifted. Everything is a pure function of the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overtrain.atomic import atomic_write_text

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<ft>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID, FT_ID = range(len(SPECIALS))
# Words of a natural-language instruction, for prompt variants. They are in the vocabulary but
# never in pretraining or fine-tuning text, as an unfamiliar prompt format is to a real model.
INSTRUCTION = "predict the next word :"


@dataclass(frozen=True)
class Language:
    """Transition tables of the pretraining topics and of the fine-tuning task's chains.

    The fine-tuning task (`task`): "topic" — one chain, `ft_successors` (V, fanout), topic
    `ft_source_topic` with a fraction of its rows resampled, documents ``<ft> w…``; "grammar" —
    every topic's own chain with the same fraction of all rows replaced by one new chain shared
    by all topics, `ft_successors` (K, V, fanout), documents ``<ft> <t_k> w…``, trained on the
    `ft_topics` most frequent topics and evaluated on all: what fine-tuning must keep is what
    pretraining knew of the other topics. `ft_shifted_rows` marks the rows that changed. A
    language loaded from its file (what pretraining reads) has no fine-tuning task.
    """

    topic_prior: np.ndarray  # (K,)
    successors: np.ndarray  # (K, V, fanout) word indices
    weights: np.ndarray  # (K, V, fanout) transition probabilities
    ft_successors: np.ndarray | None = None
    ft_weights: np.ndarray | None = None
    ft_shifted_rows: np.ndarray | None = None  # (V,) bool
    ft_source_topic: int = 0
    task: str = "topic"  # topic | grammar
    ft_topics: int = 0  # grammar: topics the fine-tuning data covers (0: all)

    @property
    def n_words(self) -> int:
        return self.successors.shape[1]

    @property
    def n_topics(self) -> int:
        return self.successors.shape[0]

    @property
    def word_offset(self) -> int:
        """Token id of word w0: specials first, then one tag per topic."""
        return len(SPECIALS) + self.n_topics

    @property
    def vocab_size(self) -> int:
        return len(self.token_strings())

    def token_strings(self) -> list[str]:
        tags = [f"<t{k}>" for k in range(self.n_topics)]
        return SPECIALS + tags + [f"w{i}" for i in range(self.n_words)] + INSTRUCTION.split()


def build_language(
    vocab: int = 64,
    topics: int = 128,
    fanout: int = 4,
    shared: float = 0.25,
    zipf: float = 1.0,
    alpha: float = 0.5,
    ft_shift: float = 0.25,
    ft_source_topic: int = 0,
    seed: int = 1234,
    ft_task: str = "topic",
    ft_topics: int = 0,
) -> Language:
    """Draw a language from its seed (same seed, same language, on any machine). The pretraining
    topics depend only on the first arguments and the seed, not on the fine-tuning task's."""
    if not 0 <= ft_source_topic < topics:
        raise ValueError(f"ft_source_topic={ft_source_topic} must be in [0, {topics})")
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, topics + 1) ** zipf
    shared_rows = rng.random(vocab) < shared

    def draw_chain(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        succ = np.stack([r.choice(vocab, fanout, replace=False) for _ in range(vocab)])
        return succ, r.dirichlet([alpha] * fanout, size=vocab)

    grammar_succ, grammar_w = draw_chain(rng)
    succ, weights = [], []
    for _ in range(topics):
        s, w = draw_chain(rng)
        s[shared_rows], w[shared_rows] = grammar_succ[shared_rows], grammar_w[shared_rows]
        succ.append(s)
        weights.append(w)
    succ, weights = np.stack(succ), np.stack(weights)

    ft_rng = np.random.default_rng([seed, 1])
    new_s, new_w = draw_chain(ft_rng)
    shifted = ft_rng.random(vocab) < ft_shift
    if ft_task == "topic":
        ft_s, ft_w = succ[ft_source_topic].copy(), weights[ft_source_topic].copy()
        ft_s[shifted], ft_w[shifted] = new_s[shifted], new_w[shifted]
    elif ft_task == "grammar":
        ft_s, ft_w = succ.copy(), weights.copy()
        ft_s[:, shifted], ft_w[:, shifted] = new_s[shifted], new_w[shifted]
    else:
        raise ValueError(f"corpus.ft_task: {ft_task!r}; allowed: topic, grammar")
    return Language(prior / prior.sum(), succ, weights, ft_s, ft_w, shifted, ft_source_topic, ft_task,
                    min(ft_topics, topics) if ft_topics else topics)


def save_language(lang: Language, path: str | Path) -> None:
    """Store the pretraining topics as .npz (plain arrays, loaded without pickle). The fine-tuning
    task is not stored: a change of it leaves pretraining's input as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, topic_prior=lang.topic_prior, successors=lang.successors, weights=lang.weights)
    tmp.replace(path)


def load_language(path: str | Path) -> Language:
    """The pretraining topics of a saved language (no fine-tuning task)."""
    with np.load(path, allow_pickle=False) as z:
        return Language(z["topic_prior"], z["successors"], z["weights"])


def walk(
    succ: np.ndarray, cum_w: np.ndarray, start: np.ndarray, length: int, rng: np.random.Generator
) -> np.ndarray:
    """Sample `length` words per row; succ/cum_w are (B, V, fanout) views per document."""
    batch = len(start)
    out = np.empty((batch, length), dtype=np.int64)
    state = start
    rows = np.arange(batch)
    out[:, 0] = state
    for t in range(1, length):
        u = rng.random(batch)[:, None]
        k = np.minimum((cum_w[rows, state] < u).sum(-1), succ.shape[-1] - 1)
        state = succ[rows, state, k]
        out[:, t] = state
    return out


def sample_pretrain(lang: Language, n_docs: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """Token ids ``<bos> <t_k> w...`` of shape (n_docs, seq_len)."""
    topics = rng.choice(lang.n_topics, n_docs, p=lang.topic_prior)
    start = rng.integers(0, lang.n_words, n_docs)
    cum = np.cumsum(lang.weights, -1)
    words = walk(lang.successors[topics], cum[topics], start, seq_len - 2, rng)
    head = np.stack([np.full(n_docs, BOS_ID), len(SPECIALS) + topics], 1)
    return np.concatenate([head, words + lang.word_offset], 1)


def sample_finetune(lang: Language, n_docs: int, seq_len: int, rng: np.random.Generator,
                    train: bool = False) -> np.ndarray:
    """Token ids of fine-tuning documents, shape (n_docs, seq_len): ``<bos> <ft> w...`` (topic
    task), or ``<bos> <ft> <t_k> w...`` on topic k's fine-tuning chain (grammar task; k drawn from
    the topic prior, among the `ft_topics` most frequent ones for training data)."""
    if lang.task == "topic":
        start = rng.integers(0, lang.n_words, n_docs)
        succ = np.broadcast_to(lang.ft_successors, (n_docs, *lang.ft_successors.shape))
        cum = np.broadcast_to(np.cumsum(lang.ft_weights, -1), succ.shape)
        words = walk(succ, cum, start, seq_len - 2, rng)
        head = np.stack([np.full(n_docs, BOS_ID), np.full(n_docs, FT_ID)], 1)
        return np.concatenate([head, words + lang.word_offset], 1)
    pool = lang.ft_topics if train else lang.n_topics
    prior = lang.topic_prior[:pool] / lang.topic_prior[:pool].sum()  # topics are ordered by prior
    topics = rng.choice(pool, n_docs, p=prior)
    start = rng.integers(0, lang.n_words, n_docs)
    words = walk(lang.ft_successors[topics], np.cumsum(lang.ft_weights, -1)[topics], start, seq_len - 3, rng)
    head = np.stack([np.full(n_docs, BOS_ID), np.full(n_docs, FT_ID), len(SPECIALS) + topics], 1)
    return np.concatenate([head, words + lang.word_offset], 1)


def _ft_chain(lang: Language, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The fine-tuning chain a document follows (successors, weights) and where its words start."""
    if lang.task == "topic":
        return lang.ft_successors, lang.ft_weights, 2
    k = int(doc[2]) - len(SPECIALS)
    return lang.ft_successors[k], lang.ft_weights[k], 3


def pretrain_batch(lang: Language, step: int, batch_size: int, seq_len: int, seed: int) -> np.ndarray:
    """The batch of a pretraining step, a function of (seed, step) only.

    Indexing the data by step (instead of a running stream) makes runs resumable and lets a
    WSD decay branch see exactly the batches a separate run would have seen.
    """
    return sample_pretrain(lang, batch_size, seq_len, np.random.default_rng([seed, step]))


def to_text(lang: Language, ids: np.ndarray) -> str:
    """Whitespace-joined tokens, without <bos>/<pad> (lm-eval adds its own prefix token)."""
    vocab = lang.token_strings()
    return " ".join(vocab[i] for i in ids if i not in (BOS_ID, PAD_ID))


def multiple_choice_items(
    lang: Language, n_items: int, context_len: int, rng: np.random.Generator
) -> list[dict]:
    """Next-word questions on the *shifted* rows of the fine-tuning chain.

    The context is a fine-tuning document cut after a word whose successors changed in the
    fine-tuning task; the choices are that word's fine-tuning successors (all plausible), the gold
    answer the one that actually followed. The base model has not seen these rows, and even a
    perfect model is right only when the sampled word is the most likely one, so accuracy has a
    ceiling below 100% (`bayes_correct` marks the items such a model gets right).

    Each item has three prompt formats: `context` (the training template, ``<bos> <ft> w…``),
    `context_instruct` (a natural-language instruction instead of the task tag) and
    `context_raw` (the words alone).
    """
    if not lang.ft_shifted_rows.any():
        raise ValueError("ft_shift is 0: the fine-tuning task has no shifted rows to ask about")
    vocab = lang.token_strings()
    items: list[dict] = []
    head = 2 if lang.task == "topic" else 3
    while len(items) < n_items:
        doc = sample_finetune(lang, 1, context_len + head, rng)[0]
        ft_succ, ft_w, first = _ft_chain(lang, doc)
        words = doc[first:] - lang.word_offset
        cut = [t for t in range(1, len(words) - 1) if lang.ft_shifted_rows[words[t]]]
        if not cut:
            continue
        t = cut[-1]
        last, gold = int(words[t]), int(words[t + 1])
        successors = [int(w) for w in ft_succ[last]]
        weights = dict(zip(successors, ft_w[last].tolist()))
        others = [w for w in successors if w != gold]
        choices = [gold] + [int(w) for w in rng.permutation(others)[:3]]
        order = rng.permutation(len(choices))
        words_text = to_text(lang, doc[2 : first + t + 1])  # the topic tag (grammar task), then the words
        items.append(
            {
                "context": "<bos> <ft> " + words_text,
                "context_instruct": f"<bos> {INSTRUCTION} {words_text}",
                "context_raw": "<bos> " + words_text,
                "choices": [vocab[choices[i] + lang.word_offset] for i in order],
                "gold": int(np.flatnonzero(order == 0)[0]),
                "bayes_correct": bool(max(choices, key=weights.get) == gold),
            }
        )
    return items


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_task_data(
    lang: Language,
    out_dir: str | Path,
    seq_len: int,
    n_eval: int,
    n_train: int,
    seed: int,
) -> dict[str, Path]:
    """Held-out pretraining text, fine-tuning train / validation / test text and MC items, as JSONL.

    The validation text (ft_val) is for choosing learning rates, the held-out text (ft_heldout)
    and MC items for reporting: a learning rate is never chosen on the numbers it is judged by.

    Fine-tuning examples are prompt/completion pairs: the loss is on the completion only, so the
    unpredictable first word after ``<ft>`` is context, as for instruction data later.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    paths = {
        "pretrain_heldout": out / "pretrain_heldout.jsonl",
        "ft_heldout": out / "ft_heldout.jsonl",
        "ft_val": out / "ft_val.jsonl",
        "ft_mc": out / "ft_mc.jsonl",
        "ft_train": out / "ft_train.jsonl",
    }
    docs = sample_pretrain(lang, n_eval, seq_len, rng)
    _write_jsonl(paths["pretrain_heldout"], [{"text": to_text(lang, d)} for d in docs])
    docs = sample_finetune(lang, n_eval, seq_len, rng)
    _write_jsonl(paths["ft_heldout"], [{"text": to_text(lang, d)} for d in docs])
    _write_jsonl(paths["ft_mc"], multiple_choice_items(lang, n_eval, seq_len // 3, rng))
    docs = sample_finetune(lang, n_train, seq_len, rng, train=True)
    # drawn after the others, so adding it left every other file unchanged
    val_rng = np.random.default_rng([seed, 3])
    context = 3 if lang.task == "topic" else 4  # <bos> <ft> [<t_k>] and the first word: no signal
    rows = [{"prompt": to_text(lang, d[:context]), "completion": to_text(lang, d[context:])} for d in docs]
    _write_jsonl(paths["ft_train"], rows)
    docs = sample_finetune(lang, n_eval, seq_len, val_rng)
    _write_jsonl(paths["ft_val"], [{"text": to_text(lang, d)} for d in docs])
    return paths


def build_tokenizer(lang: Language, out_dir: str | Path):
    """A word-level Hugging Face tokenizer for the language, saved with save_pretrained.

    No BOS post-processor: lm-eval conditions rolling windows on the BOS token itself, and a
    tokenizer that also prepends one would double it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(lang.token_strings())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok
