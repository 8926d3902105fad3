"""Benchmarks P2 (training throughput against a bare PyTorch loop and a matmul) and P3
(evaluation against a bare lm_eval.simple_evaluate)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path


def p2_training(steps: int, threads: int = 1) -> dict:
    import torch

    from overtrain import models
    from overtrain.sources import corpus
    from overtrain.training import loop, pretrain

    torch.set_num_threads(threads)
    lang = corpus.build_language()
    arch = {"hidden": 48, "layers": 2, "heads": 4, "intermediate": 192, "init_std": 0.144}
    batch, seq = 32, 64
    batches = [torch.from_numpy(corpus.pretrain_batch(lang, s, batch, seq, 1)) for s in range(steps)]

    def fresh():
        m = models.make_llama(lang.vocab_size, max_len=seq, seed=0, **arch)
        return m, loop.make_optimizer(m, 3e-3, 1.0, (0.9, 0.95))

    def bare(m, opt) -> float:  # the same work with nothing of ours around it
        m.train()
        t = time.perf_counter()
        for x in batches:
            loss = m(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    def ours(m, opt) -> float:  # overtrain's loop, generating its data per step as pretrain does
        def micro_batches(step):
            ids = torch.from_numpy(corpus.pretrain_batch(lang, step, batch, seq, 1))
            labels = ids.clone()
            labels[:, : pretrain.PRETRAIN_UNSCORED] = -100
            return [{"input_ids": ids, "labels": labels}]

        t = time.perf_counter()
        loop.run_steps(m, opt, micro_batches, lambda s: 3e-3, 0, steps, grad_clip=1.0, log=[])
        return time.perf_counter() - t

    def ours_finetune(m, opt) -> float:  # the fine-tuning path: masks, padding, per-epoch order
        ids = torch.cat(batches)[: batch * 8]
        labels = ids.clone()
        labels[:, :3] = -100
        mask = torch.ones_like(ids)
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))

        def micro_batches(step):
            idx = order[(step * batch) % len(ids) :][:batch]
            return [{"input_ids": ids[idx], "labels": labels[idx], "attention_mask": mask[idx]}]

        t = time.perf_counter()
        loop.run_steps(m, opt, micro_batches, lambda s: 1e-3, 0, steps, grad_clip=1.0, log=[])
        return time.perf_counter() - t

    fresh_pair = fresh()
    bare(*fresh_pair)  # warm-up
    runs = {"bare": [], "pretrain": [], "finetune": []}
    for _ in range(3):
        runs["bare"].append(bare(*fresh()))
        runs["pretrain"].append(ours(*fresh()))
        runs["finetune"].append(ours_finetune(*fresh()))
    tokens = steps * batch * seq
    tps = {k: tokens / statistics.median(v) for k, v in runs.items()}
    m = fresh()[0]
    n_params = models.n_parameters(m)
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    matmul_flops = 5 * 2 * 2048**3 / (time.perf_counter() - t)
    achieved = 6 * n_params * tps["pretrain"]
    return {
        "threads": threads,
        "tokens_per_s": tps,
        "pretrain_vs_bare": tps["pretrain"] / tps["bare"],
        "finetune_vs_bare": tps["finetune"] / tps["bare"],
        "params": n_params,
        "achieved_flops": achieved,
        "matmul_flops": matmul_flops,
        "flops_ratio": achieved / matmul_flops,
    }


def p3_evaluation(limit: int, repeats: int = 3) -> dict:
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    from overtrain import models
    from overtrain.evaluation import evaluate, tasks
    from overtrain.sources import corpus

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="overtrain-p3-"))
    lang = corpus.build_language()
    paths = corpus.write_task_data(lang, work / "data", 64, limit, 16, seed=1)
    tok = corpus.build_tokenizer(lang, None)
    m = models.make_llama(lang.vocab_size, hidden=48, layers=2, heads=4, intermediate=192, max_len=64, init_std=0.144, seed=0)
    models.save_model(m, tok, work / "model", {"tokens": 0})
    splits = {"synth_pretrain_ppl": "pretrain", "synth_ft_ppl": "id", "synth_ft_mc": "id"}
    task_dir = work / "tasks"
    task_dir.mkdir()
    for name in splits:
        (task_dir / f"{name}.yaml").write_text(tasks.task_yaml(name, paths[tasks.SYNTHETIC_TASKS[name][0]]))

    def bare() -> float:
        t = time.perf_counter()
        lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={work / 'model'},dtype=float32,max_length=64",
            tasks=list(splits), task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
            batch_size=64, device="cpu", limit=limit, log_samples=False, bootstrap_iters=0,
        )
        return time.perf_counter() - t

    def ours() -> float:
        t = time.perf_counter()
        model, tokenizer = models.load_variant(work / "model")
        evaluate.evaluate_model(model, tokenizer, evaluate.EvalSettings(splits, paths, limit=limit, max_length=64))
        return time.perf_counter() - t

    bare(), ours()  # warm-up: dataset caches, lazy imports
    times = {"bare": [], "ours": []}
    for _ in range(repeats):
        times["bare"].append(bare())
        times["ours"].append(ours())
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"limit": limit, "tasks": list(splits), "seconds": med, "ours_speedup": med["bare"] / med["ours"]}


def markdown(res: dict) -> list[str]:
    """The P2 and P3 sections of results.md."""
    lines: list[str] = []
    if "P2" in res:
        p = res["P2"]
        t = p["tokens_per_s"]
        lines += [
            "## P2 — training throughput (1 thread, Llama d48/L2, 32 × 64 tokens per step)",
            "",
            "| loop | tokens/s | vs bare PyTorch |",
            "|---|---|---|",
            f"| bare PyTorch | {t['bare']:.0f} | 1.00 |",
            f"| overtrain pretraining | {t['pretrain']:.0f} | **{p['pretrain_vs_bare']:.2f}** |",
            f"| overtrain fine-tuning | {t['finetune']:.0f} | **{p['finetune_vs_bare']:.2f}** |",
            "",
            f"Achieved 6·N·tokens/s = {p['achieved_flops'] / 1e9:.1f} GFLOP/s (N = {p['params']:,}) vs a "
            f"2048² fp32 matmul at {p['matmul_flops'] / 1e9:.0f} GFLOP/s: **{p['flops_ratio']:.2f}** "
            "(tiny models are overhead-bound).",
            "",
        ]
    if "P3" in res:
        p = res["P3"]
        lines += [
            f"## P3 — evaluation ({', '.join(p['tasks'])}; {p['limit']} items each)",
            "",
            f"Bare `lm_eval.simple_evaluate(model='hf', …)`: {p['seconds']['bare']:.2f} s; overtrain's "
            f"load + evaluate: {p['seconds']['ours']:.2f} s; ratio bare / ours = **{p['ours_speedup']:.2f}**.",
            "",
        ]
    return lines
