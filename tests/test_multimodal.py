"""LLaVA-style multimodal fine-tuning: the images, the vision encoder, the two stages, the
image-conditioned evaluation and the study through the rules (finetune.methods: llava)."""

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import snakemake, write_config

from overtrain.training.vision import load_vision

CELLS, CELL = 4, 8
SIZES = {"captions": 64, "instruct": 48, "val": 16, "test": 16, "transcribe": 16, "mc": 16}


@pytest.fixture(scope="module")
def mm_study(tiny_study, tmp_path_factory):
    """tiny_study's language and checkpoint, its images (overtrain.sources.images) and a vision encoder."""
    from overtrain.sources import corpus, images
    from overtrain.training import vision

    d, _ = tiny_study
    out = tmp_path_factory.mktemp("mm")
    lang = corpus.load_language(d / "language.npz")
    images.write_data(lang, out / "data", SIZES, cells=CELLS, continuation=6, noise=0.05, cell=CELL, seed=0)
    meta = vision.train_vision_encoder(lang, out / "vision", vision.VisionSpec(steps=150), cells=CELLS,
                                           cell=CELL, noise=0.05, glyph_seed=0)
    return d, out, lang, meta


def spec(stage, **changes):
    from overtrain.training.llava import LlavaSpec

    return LlavaSpec.flat(**{"stage": stage, "lr": 3e-3, "steps": 8, "batch_size": 8, "max_len": 32, **changes})


def test_images_are_a_function_of_the_seed_and_picture_the_transcription(mm_study, tmp_path):
    from overtrain.sources import images

    d, out, lang, _ = mm_study
    images.write_data(lang, tmp_path / "again", SIZES, cells=CELLS, continuation=6, noise=0.05, cell=CELL, seed=0)
    for split in SIZES:
        a, b = images.load_split(out / "data", split), images.load_split(tmp_path / "again", split)
        assert a.features["image"].__class__.__name__ == "Image"  # decoded by datasets, as hub image data
        assert len(a) == SIZES[split]
        for x, y in zip(a, b):
            assert np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
            assert {k: v for k, v in x.items() if k != "image"} == {k: v for k, v in y.items() if k != "image"}
    mc = images.load_split(out / "data", "mc")
    for row in mc:
        gold = row["choices"][row["gold"]].split()
        assert gold[0] == f"<t{row['topic']}>"
        for other in row["choices"]:
            assert sum(a != b for a, b in zip(gold, other.split())) <= 1  # one word differs
        assert len(set(row["choices"])) == 4
    # the picture shows the gold transcription: re-render it without noise and compare
    bank = images.glyph_bank(lang.n_words + lang.n_topics, CELL, 0)
    colours = images.topic_colours(lang.n_topics, 0)
    words = [int(w[1:]) for w in gold[1:]]
    clean = images.render(images.glyph_ids(lang, row["topic"], words), row["topic"], bank, colours, 0.0,
                          np.random.default_rng(0))
    noisy = np.asarray(mc[-1]["image"]).astype(float)
    assert np.abs(noisy - clean).mean() < 0.05 * 255 * 0.9  # only the pixel noise differs


def test_the_vision_encoder_learns_to_read_a_cell(mm_study):
    _, out, lang, meta = mm_study
    assert meta["heldout_cell_accuracy"] > 0.9, meta
    assert (out / "vision" / "model.safetensors").exists()
    assert not list((out / "vision").glob("*.bin"))


def test_composing_keeps_the_language_model_and_its_vocabulary(mm_study):
    import torch

    from overtrain.models import load_model, load_tokenizer
    from overtrain.training import llava

    d, out, _, _ = mm_study
    lm, tok = load_model(d / "ckpt"), load_tokenizer(d / "ckpt")
    before = lm.get_input_embeddings().weight.detach().clone()
    n = len(tok)
    image_id = llava.add_image_token(lm, tok)
    assert image_id == n and len(tok) == n + 1
    assert torch.equal(lm.get_input_embeddings().weight[:n], before)
    assert llava.add_image_token(lm, tok) == image_id  # once
    vision, _ = load_vision(out / "vision")
    model = llava.compose(lm, vision, image_id, -1, "default").eval()
    ids = torch.tensor([[1, 5, 9, 12, 20]])
    with torch.no_grad():  # text without an image: the composed model is the language model
        assert torch.allclose(model(input_ids=ids).logits, lm.eval()(input_ids=ids).logits, atol=1e-6)
    assert llava.n_image_tokens(vision.config, "default") == CELLS
    assert llava.n_image_tokens(vision.config, "full") == CELLS + 1


def test_composing_works_for_other_model_families(mm_study):
    """GPT-NeoX (Pythia) keeps its decoder and head under other attribute names than Llama."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from overtrain.training import llava

    _, out, _, _ = mm_study
    torch.manual_seed(0)
    lm = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=32)).eval()
    vision, _ = load_vision(out / "vision")
    model = llava.compose(lm, vision, 39, -1, "default").eval()
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, lm(input_ids=ids).logits, atol=1e-6)
    back = llava.language_model(model, lm.config)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), lm.state_dict().values()))


def test_stage_one_trains_the_projector_only_and_stage_two_the_language_model_too(mm_study, tmp_path):
    from safetensors.torch import load_file

    from overtrain.models import load_model, load_variant
    from overtrain.training import llava

    d, out, _, _ = mm_study
    one = llava.train(d / "ckpt", out / "vision", out / "data", "captions", tmp_path / "proj", spec("projector"))
    projector = load_file(str(tmp_path / "proj" / llava.PROJECTOR_FILE))
    assert one["trainable"] == sum(v.numel() for v in projector.values())
    two = llava.train(d / "ckpt", out / "vision", out / "data", "instruct", tmp_path / "ft", spec("full"),
                           projector_dir=tmp_path / "proj")
    lm = load_model(d / "ckpt")
    # projector + every language-model weight (the vocabulary grew by <image>), not the vision tower
    assert two["trainable"] == one["trainable"] + sum(p.numel() for p in lm.parameters()) + 2 * lm.config.hidden_size
    model, tok = load_variant(d / "ckpt", tmp_path / "ft")  # the fine-tune is an ordinary causal LM
    assert "<image>" in tok.get_vocab()
    assert not np.allclose(model.lm_head.weight[:-1].detach().numpy(), lm.lm_head.weight.detach().numpy())
    assert json.loads((tmp_path / "ft" / "meta.json").read_text())["method"] == "llava"
    assert not (tmp_path / "ft" / "projector.safetensors").read_bytes() == (tmp_path / "proj" / "projector.safetensors").read_bytes()
    # the same settings give the same weights (CPU determinism)
    again = llava.train(d / "ckpt", out / "vision", out / "data", "instruct", tmp_path / "ft2", spec("full"),
                projector_dir=tmp_path / "proj")
    assert again["final_train_loss"] == two["final_train_loss"]
    assert (tmp_path / "ft" / "model.safetensors").read_bytes() == (tmp_path / "ft2" / "model.safetensors").read_bytes()


def test_evaluation_scores_the_image_conditioned_sets(mm_study, tmp_path):
    from overtrain.evaluation import multimodal
    from overtrain.training import llava

    d, out, _, _ = mm_study
    llava.train(d / "ckpt", out / "vision", out / "data", "captions", tmp_path / "proj", spec("projector"))
    llava.train(d / "ckpt", out / "vision", out / "data", "instruct", tmp_path / "ft", spec("full"),
                     projector_dir=tmp_path / "proj")
    labels = {"model": "tiny", "ckpt": "c", "variant": "finetuned", "ft_task": "synth_mm", "ft_method": "llava"}
    result = multimodal.evaluate(tmp_path / "ev.json", d / "ckpt", out / "vision", tmp_path / "ft", out / "data",
                                 labels, task="synth_mm", limit=None, batch_size=8, max_len=32)
    rows = {r["eval_task"]: r for r in json.loads((tmp_path / "ev.json").read_text())["rows"]}
    assert result["status"] == "ok"
    assert set(rows) == {"synth_mm_val", "synth_mm_test", "synth_mm_transcribe", "synth_mm_mc"}
    assert rows["synth_mm_val"]["split"] == "val" and rows["synth_mm_test"]["split"] == "id"
    assert 0 <= rows["synth_mm_mc"]["value"] <= 1 and rows["synth_mm_mc"]["metric"] == "acc"
    assert all(np.isfinite(r["value"]) and r["value"] > 0 for k, r in rows.items() if k != "synth_mm_mc")
    assert result["runtime"]["dtype"] == "float32" and result["versions"]["torch"]
    # compute.dtype reaches the image-conditioned rows as it does the fine-tune's text rows (bf16 on
    # a GPU; here its CPU analogue): the numbers move by bf16 rounding only
    half = multimodal.evaluate(tmp_path / "ev16.json", d / "ckpt", out / "vision", tmp_path / "ft", out / "data",
                               labels, task="synth_mm", limit=None, batch_size=8, max_len=32, dtype="bfloat16")
    assert half["runtime"]["dtype"] == "bfloat16"
    for r in half["rows"]:
        assert r["value"] == pytest.approx(rows[r["eval_task"]]["value"], rel=0.05, abs=0.13), r


def test_a_wrong_pairing_of_task_and_method_is_rejected(micro_config):
    from overtrain import checks
    from overtrain import config as grid

    bad = copy.deepcopy(micro_config)
    bad["finetune"].update(tasks=["synth_ft"], methods=["llava"])
    with pytest.raises(grid.ConfigError, match=r"finetune.tasks\[0\].*llava fine-tunes multimodal tasks only"):
        checks.check(_filled(bad))
    bad["finetune"].update(tasks=["synth_mm"], methods=["full"])
    with pytest.raises(grid.ConfigError, match=r"finetune.tasks\[0\].*multimodal task is fine-tuned by method llava"):
        checks.check(_filled(bad))
    good = copy.deepcopy(micro_config)
    good["finetune"].update(tasks=["synth_ft", "synth_mm"], methods=["full", "llava"])
    cfg = _filled(good)
    checks.check(cfg)
    runs = grid.finetune_runs(cfg)
    assert {t for t, r in runs if r.startswith("llava-")} == {"synth_mm"}
    assert {t for t, r in runs if r.startswith("full-")} == {"synth_ft"}
    assert all(not g.startswith("llava") for _, g, _ in grid.connectivity_groups(cfg))
    assert grid.own_val_task("synth_mm") == "synth_mm_val"


def _filled(cfg):
    """The config with the schema's defaults, as the workflow sees it."""
    from pathlib import Path

    from snakemake.utils import validate

    cfg = copy.deepcopy(cfg)
    validate(cfg, str(Path(__file__).parents[1] / "schemas" / "config.schema.yaml"))
    return cfg


MM_MICRO = {
    "finetune": {"tasks": ["synth_ft", "synth_mm"], "methods": ["full", "llava"]},
    "multimodal": {"n": SIZES, "vision": {"steps": 100}, "stage1": {"steps": 20, "batch_size": 8}},
}


@pytest.mark.e2e
def test_llava_fine_tunes_join_the_study_through_the_rules(micro_run, micro_config, tmp_path):
    """Adding methods llava and task synth_mm to the micro study runs only the new jobs; their
    rows (ft_method llava) reach metrics.csv, the tuned learning rates, hypotheses and figures."""
    work, _ = micro_run
    shutil.copytree(work, tmp_path / "w", symlinks=True)
    work = tmp_path / "w"
    cfg = micro_config
    cfg["finetune"].update(MM_MICRO["finetune"])
    cfg["multimodal"] = MM_MICRO["multimodal"]
    configfile = write_config(work / "mm.yaml", cfg)
    dry = snakemake(work, configfile, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "pretrain " not in dry.stdout and "finetune " not in dry.stdout.replace("finetune_llava", "")
    for rule in ("multimodal_data", "vision_encoder", "align_projector", "finetune_llava", "evaluate_multimodal"):
        assert rule in dry.stdout
    r = snakemake(work, configfile, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = work / "results" / "micro"
    metrics = pd.read_csv(results / "tables" / "metrics.csv")
    llava = metrics[metrics["ft_method"] == "llava"]
    assert set(llava["ft_task"]) == {"synth_mm"}
    assert {"synth_mm_val", "synth_mm_test", "synth_mm_transcribe", "synth_mm_mc"} <= set(llava["eval_task"])
    assert {"pretrain", "ood"} <= set(llava["split"])  # forgetting: pretraining text and the text task's tests
    assert (llava["metric"] == "forgetting_loss").any()
    best = pd.read_csv(results / "tables" / "best_lr.csv")
    assert (best["ft_method"] == "llava").sum() == len(metrics["ckpt"].unique())
    hyp = pd.read_csv(results / "tables" / "hypotheses.csv")
    assert hyp["condition"].str.startswith("llava, ").any()
    assert hyp[hyp["condition"].str.startswith("llava, ")]["hypothesis"].str.contains("forgetting").any()
    for name in ("finetune_pretrain_loss", "finetune_task_metric", "tuned_learning_rate"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 0


# --- the hub path, offline: a test-filled HF cache and local `datasets` image data --------------

CLIP_REPO = "overtrain-test/tiny-clip"


def fill_clip_cache(hf_home) -> str:
    """A tiny random CLIP (16-pixel images, 8-pixel patches) under refs/main, as huggingface_hub
    would have cached it; returns its commit."""
    import hashlib

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    commit = hashlib.sha1(CLIP_REPO.encode()).hexdigest()
    root = hf_home / "hub" / f"models--{CLIP_REPO.replace('/', '--')}"
    snap = root / "snapshots" / commit
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": CELL}, projection_dim=16)
    import torch

    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(snap, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(snap)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return commit


def llava_parquet(lang, path, kind: str, n: int, seed: int) -> None:
    """Generated pictures as LLaVA conversations (an Image column and a list of turns)."""
    from overtrain.sources import images

    rows = images.make_rows(lang, kind, n, CELLS, 3, 0.05, CELL, 0, seed)
    data = images.to_dataset(rows).map(lambda r: {"conversations": [
        {"from": "human", "value": "<image>\n" + r["prompt"]}, {"from": "gpt", "value": r["completion"]}]},
        remove_columns=["prompt", "completion", "topic"])
    data.to_parquet(str(path))


@pytest.mark.e2e
def test_the_hub_path_runs_offline_through_the_rules(tmp_path, monkeypatch):
    """Hub checkpoints and a hub CLIP tower from a test-filled cache, captions and instructions
    from local parquet image datasets, a benchmark through lm-eval's hf-multimodal: every rule of
    the LLaVA path, offline."""
    from test_hub import REPO_ID, fill_cache, hub_config, run_env

    from overtrain.sources import corpus, images

    home = tmp_path / "hf"
    fill_cache(home, REPO_ID, {"step1000-tokens4B": 0, "step2000-tokens8B": 1})
    commit = fill_clip_cache(home)
    lang = corpus.build_language(topics=8, seed=1234)  # fill_cache's tokenizer is this language's
    llava_parquet(lang, tmp_path / "captions.parquet", "continuation", 48, 1)
    llava_parquet(lang, tmp_path / "instruct.parquet", "transcription", 48, 2)
    bench = tmp_path / "tasks"
    bench.mkdir()
    images.to_dataset(images.make_rows(lang, "transcription", 8, CELLS, 3, 0.05, CELL, 0, 3)).to_parquet(
        str(tmp_path / "read.parquet"))
    (bench / "tiny_read.yaml").write_text(
        "task: tiny_read\ndataset_path: parquet\n"
        f"dataset_kwargs:\n  data_files: {{test: {tmp_path / 'read.parquet'}}}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_image: [image]\ndoc_to_text: \"<bos> <image> {{prompt}}\"\n"
        "doc_to_target: \"{{completion}}\"\ngeneration_kwargs: {until: [\"<eos>\"], max_gen_toks: 4, do_sample: false}\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    cfg = hub_config(["step1000-tokens4B", "step2000-tokens8B"], tmp_path)
    cfg["finetune"].update(tasks=["llava"], methods=["llava"], steps=4, epochs=None, batch_size=8, max_length=32,
                           datasets={})
    cfg["multimodal"] = {
        "vision": {"source": "hub", "repo": CLIP_REPO, "revision": "main"},
        "feature_layer": -2,
        "stage1": {"steps": 4, "batch_size": 8},
        "data": {"captions": {"path": str(tmp_path / "captions.parquet"), "n": 40},
                 "instruct": {"path": str(tmp_path / "instruct.parquet"), "n": 32}, "n_val": 8, "n_test": 8},
        "benchmarks": ["tiny_read"],
        "benchmark_include": str(bench),
        "batch_size": 8,
    }
    cfg["connectivity"] = {"learning_rates": []}
    configfile = write_config(tmp_path / "hub-llava.yaml", cfg)
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(configfile), "--cores", "2"],
                       capture_output=True, text=True, env=run_env(home), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = tmp_path / "results" / "hub"
    vision = json.loads((results / "multimodal" / "vision" / "meta.json").read_text())
    assert vision["repo"] == CLIP_REPO and vision["commit"] == commit and vision["weights"]
    data = json.loads((results / "multimodal" / "data" / "llava" / "meta.json").read_text())
    assert data["sizes"] == {"captions": 40, "val": 8, "test": 8, "instruct": 32}
    metrics = pd.read_csv(results / "tables" / "metrics.csv")
    llava = metrics[metrics["ft_method"] == "llava"]
    assert set(llava["ckpt"]) == {"step1000-tokens4B", "step2000-tokens8B"}
    assert {"llava_val", "llava_test", "tiny_read"} <= set(llava["eval_task"])
    read = llava[(llava["eval_task"] == "tiny_read") & (llava["metric"] == "exact_match")]
    assert len(read) == 2 * len(cfg["finetune"]["learning_rates"]) and read["value"].between(0, 1).all()
    assert (llava["split"] == "pretrain").any()  # forgetting, on the text held out from pretraining
    best = pd.read_csv(results / "tables" / "best_lr.csv")
    assert set(best["ft_method"]) == {"llava"}
