import json

import pytest
import torch

from overtrain import models
from overtrain.sources import checkpoints


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="safetensors"):
        models.load_model(tmp_path)


def test_local_checkpoint_links_and_records(tmp_path):
    from overtrain.sources import corpus

    lang = corpus.build_language(topics=2, seed=0)
    m = models.make_llama(lang.vocab_size, hidden=8, layers=1, heads=2, intermediate=16, max_len=16, init_std=0.1, seed=0)
    tok = corpus.build_tokenizer(lang, None)
    models.save_model(m, tok, tmp_path / "src", {"tokens": 0})
    meta = checkpoints.link_local(tmp_path / "src", tmp_path / "ckpt", tokens=123)
    assert meta["tokens"] == 123 and len(meta["weights"]["model.safetensors"]["sha256"]) == 64
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())["tokens"] == 123
    back, _ = models.load_variant(tmp_path / "ckpt")
    assert torch.equal(back.lm_head.weight, m.lm_head.weight)
