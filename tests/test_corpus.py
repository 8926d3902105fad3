import numpy as np
import pytest

from overtrain.sources import corpus


def test_same_seed_same_language_and_files(tmp_path):
    a, b = corpus.build_language(topics=8, seed=7), corpus.build_language(topics=8, seed=7)
    for field in ("topic_prior", "successors", "weights", "ft_successors", "ft_weights"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    corpus.write_task_data(a, tmp_path / "a", 32, 20, 10, seed=7)
    corpus.write_task_data(b, tmp_path / "b", 32, 20, 10, seed=7)
    for name in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc", "ft_train"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()


def test_other_seed_other_language():
    a, b = corpus.build_language(topics=8, seed=1), corpus.build_language(topics=8, seed=2)
    assert not np.array_equal(a.successors, b.successors)


def test_language_structure():
    lang = corpus.build_language(vocab=32, topics=6, fanout=4, shared=0.5, ft_shift=0.25, seed=3)
    assert lang.successors.shape == (6, 32, 4)
    np.testing.assert_allclose(lang.weights.sum(-1), 1.0)
    np.testing.assert_allclose(lang.topic_prior.sum(), 1.0)
    assert np.all(np.diff(lang.topic_prior) <= 0)  # Zipf: topic 0 most frequent
    # shared rows are identical across topics
    shared = np.all(lang.successors == lang.successors[:1], axis=(0, 2))
    assert shared.sum() >= 8
    # the fine-tuning chain equals the source topic except on the shifted rows
    same = np.all(lang.ft_successors == lang.successors[0], axis=1)
    assert np.all(same[~lang.ft_shifted_rows])
    assert lang.ft_shifted_rows.any()


def test_samples_follow_the_chain():
    lang = corpus.build_language(vocab=32, topics=4, seed=5)
    docs = corpus.sample_finetune(lang, 50, 20, np.random.default_rng(0))
    assert docs.shape == (50, 20)
    assert np.all(docs[:, 0] == corpus.BOS_ID) and np.all(docs[:, 1] == corpus.FT_ID)
    words = docs[:, 2:] - lang.word_offset
    for row in words:
        for prev, nxt in zip(row[:-1], row[1:]):
            assert nxt in lang.ft_successors[prev]
    pt = corpus.sample_pretrain(lang, 50, 20, np.random.default_rng(0))
    topics = pt[:, 1] - len(corpus.SPECIALS)
    for topic, row in zip(topics, pt[:, 2:] - lang.word_offset):
        for prev, nxt in zip(row[:-1], row[1:]):
            assert nxt in lang.successors[topic, prev]


def test_pretrain_batch_depends_only_on_seed_and_step():
    lang = corpus.build_language(topics=4, seed=5)
    a = corpus.pretrain_batch(lang, 12, 4, 16, seed=1)
    corpus.pretrain_batch(lang, 3, 4, 16, seed=1)
    assert np.array_equal(a, corpus.pretrain_batch(lang, 12, 4, 16, seed=1))
    assert not np.array_equal(a, corpus.pretrain_batch(lang, 13, 4, 16, seed=1))


def test_multiple_choice_items_ask_about_shifted_rows():
    lang = corpus.build_language(topics=8, seed=11)
    items = corpus.multiple_choice_items(lang, 200, 20, np.random.default_rng(0))
    vocab = lang.token_strings()
    ceiling = np.mean([it["bayes_correct"] for it in items])
    assert 0.3 < ceiling < 0.95  # a perfect model cannot reach 100%
    for it in items:
        last = vocab.index(it["context"].split()[-1]) - lang.word_offset
        assert lang.ft_shifted_rows[last]
        succ = {vocab[w + lang.word_offset] for w in lang.ft_successors[last]}
        assert set(it["choices"]) <= succ and len(set(it["choices"])) == len(it["choices"])
        assert 0 <= it["gold"] < len(it["choices"])
        assert it["context"].startswith("<bos> <ft> ")


def test_no_shift_is_refused():
    lang = corpus.build_language(topics=4, ft_shift=0.0, seed=1)
    with pytest.raises(ValueError, match="ft_shift"):
        corpus.multiple_choice_items(lang, 5, 10, np.random.default_rng(0))


def test_the_saved_language_is_what_pretraining_reads_and_no_fine_tuning_task_changes_it(tmp_path):
    lang = corpus.build_language(topics=4, seed=9)
    corpus.save_language(lang, tmp_path / "lang.npz")
    back = corpus.load_language(tmp_path / "lang.npz")
    assert np.array_equal(back.successors, lang.successors) and back.ft_successors is None
    other = corpus.build_language(topics=4, seed=9, ft_shift=0.9, ft_task="grammar", ft_topics=2)
    corpus.save_language(other, tmp_path / "other.npz")
    assert (tmp_path / "lang.npz").read_bytes() == (tmp_path / "other.npz").read_bytes()


def test_the_grammar_task_changes_the_same_rows_of_every_topic_and_trains_on_a_few():
    """ft_task grammar: ft_shift of all rows follow one new chain in every topic; the rest is each
    topic's own; training documents come from the ft_topics most frequent topics, held-out ones
    from all, each tagged with its topic."""
    lang = corpus.build_language(vocab=32, topics=6, shared=0.25, ft_shift=0.5, seed=3, ft_task="grammar",
                                 ft_topics=2)
    changed = lang.ft_shifted_rows
    assert 0 < changed.sum() < 32
    for k in range(6):
        assert np.array_equal(lang.ft_successors[k][~changed], lang.successors[k][~changed])
        assert np.array_equal(lang.ft_successors[k][changed], lang.ft_successors[0][changed])
    rng = np.random.default_rng(0)
    train = corpus.sample_finetune(lang, 200, 12, rng, train=True)
    held = corpus.sample_finetune(lang, 400, 12, rng)
    tags = lambda docs: set((docs[:, 2] - len(corpus.SPECIALS)).tolist())  # noqa: E731
    assert tags(train) <= {0, 1} and len(tags(held)) > 2
    assert (train[:, 1] == corpus.FT_ID).all()
    for doc in held[:50]:
        k, words = int(doc[2]) - len(corpus.SPECIALS), doc[3:] - lang.word_offset
        for prev, nxt in zip(words[:-1], words[1:]):
            assert nxt in lang.ft_successors[k][prev]
    items = corpus.multiple_choice_items(lang, 20, 8, rng)
    assert all(item["context"].split()[2].startswith("<t") for item in items)


def test_tokenizer_roundtrip(tmp_path):
    lang = corpus.build_language(topics=4, seed=9)
    corpus.build_tokenizer(lang, tmp_path / "tok")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    ids = corpus.sample_pretrain(lang, 1, 12, np.random.default_rng(0))[0]
    text = corpus.to_text(lang, ids)
    assert tok(text, add_special_tokens=False)["input_ids"] == list(ids[1:])
    assert tok.bos_token_id == corpus.BOS_ID and tok.pad_token_id == corpus.PAD_ID
