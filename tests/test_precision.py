"""Mixed precision done right, tested through its CPU analogue (bf16 autocast on CPU): float32
master weights keep the small updates of small learning rates that pure-bf16 AdamW rounds away."""

import json

import pytest
import torch
from conftest import tiny_finetune
from safetensors.torch import load_file

from overtrain import models
from overtrain.training import finetune


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study


def delta(ckpt, out):
    """The learned change of every weight matrix, flattened into one vector."""
    w0, w1 = load_file(str(ckpt / "model.safetensors")), load_file(str(out / "model.safetensors"))
    return torch.cat([(w1[k].double() - w0[k].double()).flatten() for k in sorted(w0) if w0[k].dim() >= 2])


def test_bf16_autocast_keeps_the_updates_of_a_small_learning_rate(study, tmp_path):
    d, paths = study
    kw = dict(lr=2e-6, steps=20, warmup_steps=2)
    meta32 = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "fp32", dtype="float32", **kw)
    meta16 = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "bf16", dtype="bfloat16", **kw)
    a, b = delta(d / "ckpt", tmp_path / "fp32"), delta(d / "ckpt", tmp_path / "bf16")
    cosine = float(a @ b / (a.norm() * b.norm()))
    ratio = float(b.norm() / a.norm())
    assert cosine >= 0.9, cosine
    assert 0.8 <= ratio <= 1.25, ratio
    assert float((b != 0).double().mean()) > 0.9  # nearly every weight moved
    assert meta16["autocast"] is True and meta16["compute_dtype"] == "bfloat16"
    assert meta16["param_dtype"] == "float32" and meta16["device"] == "cpu"
    assert meta32["autocast"] is False
    assert meta16["saved_dtype"] == "float32"  # a float32 checkpoint's fine-tune stays float32
    saved = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in saved.values())


def bf16_checkpoint(src, dst):
    model, tok = models.load_variant(src)
    model.to(torch.bfloat16).save_pretrained(dst)
    tok.save_pretrained(dst)
    (dst / "meta.json").write_text(json.dumps({"tokens": 1}))
    return dst


def test_a_bf16_checkpoint_fine_tuned_at_a_small_rate_is_saved_in_float32(study, tmp_path):
    d, paths = study
    ckpt = bf16_checkpoint(d / "ckpt", tmp_path / "ckpt16")
    assert json.loads((ckpt / "config.json").read_text())["dtype"] == "bfloat16"
    meta = tiny_finetune(ckpt, paths["ft_train"], tmp_path / "ft", lr=2e-6, steps=10, dtype="bfloat16")
    # rounding to bf16 would undo most of what the run learned: it is saved in float32
    assert meta["saved_dtype"] == "float32" and meta["save_rounding_ratio"] > 0.5
    change = delta(ckpt, tmp_path / "ft")
    assert float((change != 0).double().mean()) > 0.9


def test_save_dtype_keeps_16_bits_only_when_that_loses_nothing_learned(study, tmp_path):
    d, _ = study
    ckpt = bf16_checkpoint(d / "ckpt", tmp_path / "ckpt16")
    w0 = load_file(str(ckpt / "model.safetensors"))
    exact = {k: v.float() * 2 for k, v in w0.items()}  # a change bf16 represents exactly
    assert finetune.save_dtype_for(exact, ckpt) == ("bfloat16", 0.0)
    tiny = {k: (v.double() + 1e-6).float() for k, v in w0.items()}
    assert finetune.save_dtype_for(tiny, ckpt)[0] == "float32"


def test_lora_adapters_are_merged_in_float32(study, tmp_path):
    d, paths = study
    lora = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "lora", lr=1e-4, steps=6, method="lora", lora=lora)
    fp32, _ = models.load_variant(d / "ckpt", tmp_path / "lora", dtype="float32")
    bf16, _ = models.load_variant(d / "ckpt", tmp_path / "lora", dtype="bfloat16")
    for name, w in fp32.state_dict().items():
        assert torch.equal(bf16.state_dict()[name], w.to(torch.bfloat16)), name


def test_a_gpu_job_without_a_gpu_fails_clearly():
    assert not torch.cuda.is_available()
    with pytest.raises(models.NoGPUError, match="sees no GPU.*compute.device: cpu"):
        models.resolve_device("cuda", "auto")
    with pytest.raises(models.NoGPUError, match="gpus_per_job=1"):
        models.resolve_device("auto", "auto", gpus=1)
    assert models.resolve_device("auto", "auto", gpus=0) == ("cpu", "float32")
    assert models.resolve_device("cpu", "bfloat16", gpus=1) == ("cpu", "bfloat16")


def test_resume_never_continues_a_state_of_other_settings(study, tmp_path, monkeypatch, capsys):
    """A state left by a float32 run is ignored by a bf16 rerun of the same output."""
    from overtrain.training import loop

    d, paths = study
    out = tmp_path / "ft"
    monkeypatch.setattr(loop.Resume, "clear", lambda self: None)  # keep the state, as a kill would
    tiny_finetune(d / "ckpt", paths["ft_train"], out, steps=12, save_every=4, dtype="float32")
    assert (loop.resume_dir(out) / "state.pt").exists()
    import shutil

    shutil.rmtree(out)
    capsys.readouterr()
    tiny_finetune(d / "ckpt", paths["ft_train"], out, steps=12, save_every=4, dtype="bfloat16")
    assert "belongs to a run with other settings" in capsys.readouterr().out
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "fresh", steps=12, dtype="bfloat16")
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "fresh" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unreadable_resume_state_is_ignored(study, tmp_path, capsys):
    from overtrain.training import loop

    d, paths = study
    out = tmp_path / "ft"
    state = loop.resume_dir(out) / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"torn by a node crash")
    tiny_finetune(d / "ckpt", paths["ft_train"], out, steps=6, save_every=2)
    assert "ignoring unreadable resume state" in capsys.readouterr().out
    assert (out / "model.safetensors").exists()
