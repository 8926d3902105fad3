"""Benchmark P6: fine-tuning batches on instruction-like (long-tailed) lengths."""

from __future__ import annotations

import time


def p6_padding(n_examples: int, steps: int, batch: int = 8) -> dict:
    """Non-padding tokens/s of three batchings of the same long-tailed examples (1 thread)."""
    import numpy as np
    import torch

    from overtrain import models
    from overtrain.training import loop, sft

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # instruction data: many short examples, a long tail (lognormal, median 80 tokens, ≤ 512)
    lengths = np.clip(rng.lognormal(np.log(80), 0.8, n_examples), 8, 512).astype(int)
    ids = [rng.integers(5, 256, n).tolist() for n in lengths]
    labels = [[-100] * (n // 2) + x[n // 2 :] for n, x in zip(lengths, ids)]
    enc = sft.Encoded(ids, labels, pad_id=0)
    widest = int(lengths.max())
    modes = {"padded": (False, widest), "random": (False, None), "grouped": (True, None)}
    out = {}
    for name, (group, pad_to) in modes.items():
        order = sft.batch_order(lengths.tolist(), batch, steps + 1, seed=0, group_by_length=group)
        model = models.make_llama(256, hidden=64, layers=2, heads=4, intermediate=256, max_len=512, init_std=0.02, seed=0)
        opt = loop.make_optimizer(model, 1e-4, 0.0, (0.9, 0.95))

        def micro_batches(step, order=order, pad_to=pad_to):
            return [sft.collate(enc, order[step], pad_to)]

        loop.run_steps(model, opt, micro_batches, lambda s: 1e-4, 0, 1, grad_clip=1.0, log=[])  # warm-up
        t = time.perf_counter()
        loop.run_steps(model, opt, micro_batches, lambda s: 1e-4, 1, steps + 1, grad_clip=1.0, log=[])
        seconds = time.perf_counter() - t
        real = int(sum(lengths[order[s]].sum() for s in range(1, steps + 1)))
        computed = sum((pad_to or int(lengths[order[s]].max())) * batch for s in range(1, steps + 1))
        out[name] = {"seconds": seconds, "real_tokens_per_s": real / seconds, "padding_share": 1 - real / computed}
    return {
        "examples": n_examples, "steps": steps, "batch": batch, "median_length": float(np.median(lengths)),
        "max_length": widest, "modes": out,
        "grouped_vs_padded": out["grouped"]["real_tokens_per_s"] / out["padded"]["real_tokens_per_s"],
        "grouped_vs_random": out["grouped"]["real_tokens_per_s"] / out["random"]["real_tokens_per_s"],
    }


def markdown(p: dict) -> list[str]:
    """The P6 section of benchmarks/results.md."""
    labels = {"padded": "plain padded (to the longest example)", "random": "random order, trimmed per batch",
              "grouped": "length-grouped, trimmed per batch (overtrain)"}
    return [
        f"## P6 — fine-tuning batches on instruction-like lengths ({p['examples']} examples, median "
        f"{p['median_length']:.0f} tokens, longest {p['max_length']}; {p['steps']} steps × {p['batch']}; 1 thread)",
        "",
        "| batches | non-padding tokens/s | padding share |",
        "|---|---|---|",
        *[f"| {labels[k]} | {v['real_tokens_per_s']:.0f} | {100 * v['padding_share']:.0f}% |"
          for k, v in p["modes"].items()],
        "",
        f"Length-grouped vs plain padded: **{p['grouped_vs_padded']:.1f}×**; vs random trimmed: "
        f"**{p['grouped_vs_random']:.1f}×**.",
        "",
    ]
