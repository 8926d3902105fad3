"""The first thing to run on a cluster node: a short full fine-tune and an evaluation of a Hub
checkpoint through overtrain's own loop and lm-eval wrapper, printing tokens/s, MFU against the
device's bf16 peak and peak memory.

    python benchmarks/gpu.py                                   # allenai/OLMo-1B-hf @ main, CUDA, bf16
    python benchmarks/gpu.py --repo EleutherAI/pythia-160m --revision step143000 --batch-size 16
    python benchmarks/gpu.py --device cpu --dtype float32 ...  # the same on a CPU (how CI runs it)

Training is what the workflow's fine-tunes do (float32 master weights, bf16 autocast, AdamW,
token-normalised loss); the data are random token sequences of --seq-len tokens, so nothing
needs downloading beyond the checkpoint. Evaluation scores the same kind of text with lm-eval's
rolling log-likelihood (the held-out perplexity task). MFU = 6·N·tokens/s (training) or
2·N·tokens/s (evaluation) over the device's peak: a table of known GPUs' dense bf16 peaks,
--peak-tflops, or on a CPU a measured matmul in the compute dtype.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
GPU_PEAK_TFLOPS = {
    "H200": 989, "H100 SXM": 989, "H100 NVL": 835, "H100 PCIe": 756, "H100": 756, "GH200": 989,
    "A100": 312, "A800": 312, "L40S": 362, "L40": 181, "L4": 121, "A40": 150, "A10": 125, "A6000": 155,
    "RTX 4090": 165, "RTX 3090": 71, "MI300X": 1307, "MI250X": 383, "B200": 2250,
}


def device_peak_flops(device: str, dtype: str, override_tflops: float | None) -> tuple[float, str]:
    """(peak FLOP/s, where the number comes from)."""
    import torch

    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        for key, tflops in sorted(GPU_PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])):
            if key in name:
                return tflops * 1e12, f"data sheet ({name}, dense bf16)"
        raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops (its dense bf16 TFLOP/s)")
    n = 2048
    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * n**3 / (time.perf_counter() - t), f"measured {n}² {dtype} matmul on the CPU"


def peak_memory_gb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB → GB (process high-water mark)


def random_text(tokenizer, n_docs: int, seq_len: int, seed: int) -> list[str]:
    """Documents of random ordinary tokens (decoded): nothing to download, realistic shapes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(min(len(tokenizer), 50_000)) if i not in special]
    return [tokenizer.decode(rng.choice(vocab, seq_len).tolist()) for _ in range(n_docs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default="allenai/OLMo-1B-hf")
    ap.add_argument("--revision", default="main")
    ap.add_argument("--local", help="a local HF model directory instead of a Hub revision")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (after 2 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--eval-docs", type=int, default=64)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()

    import torch

    from overtrain import models
    from overtrain.evaluation import evaluate
    from overtrain.sources import checkpoints
    from overtrain.training import loop, sft

    device, dtype = models.resolve_device(a.device, a.dtype, gpus=1 if a.device == "auto" and torch.cuda.is_available() else 0)
    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="overtrain-gpu-"))
    if a.local:
        ckpt, source = Path(a.local), a.local
    else:
        ckpt, source = work / "ckpt", f"{a.repo}@{a.revision}"
        t = time.perf_counter()
        meta = checkpoints.download_hub(a.repo, a.revision, ckpt, tokens=0)
        print(f"checkpoint {source} (commit {meta['commit'][:12]}) ready in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    model, tokenizer = models.load_variant(ckpt, device=device, dtype="float32")  # float32 master weights
    load_s = time.perf_counter() - t
    n_params = models.n_parameters(model)
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peak, peak_source = device_peak_flops(device, dtype, a.peak_tflops)
    print(f"{n_params / 1e6:.1f}M parameters on {device}, compute {dtype}; peak {peak / 1e12:.1f} TFLOP/s ({peak_source})")

    # training: the workflow's loop on random token sequences
    docs = random_text(tokenizer, a.batch_size * (a.steps + 2), a.seq_len - 1, seed=0)  # + <bos>
    encoded = sft.encode_examples(tokenizer, [("", d) for d in docs], a.seq_len)
    order = sft.batch_order(encoded.lengths, a.batch_size, a.steps + 2, seed=0)
    opt = loop.make_optimizer(model, 1e-5, 0.0, (0.9, 0.95))
    precision = loop.Precision(device, dtype)

    def micro_batches(step):
        return [sft.collate(encoded, order[step])]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    log: list[dict] = []
    loop.run_steps(model, opt, micro_batches, lambda s: 1e-5, 0, 2, grad_clip=1.0, log=log, precision=precision)
    sync()
    t = time.perf_counter()
    loop.run_steps(model, opt, micro_batches, lambda s: 1e-5, 2, a.steps + 2, grad_clip=1.0, log=log,
                   precision=precision, label="benchmark")
    sync()
    train_s = time.perf_counter() - t
    train_tokens = sum(sum(encoded.lengths[i] for i in order[s]) for s in range(2, a.steps + 2))
    train_tps = train_tokens / train_s

    # evaluation: lm-eval's rolling log-likelihood over fresh random documents
    model.eval()
    data = work / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in random_text(tokenizer, a.eval_docs, a.seq_len, 1)))
    if dtype != "float32":
        model.to(getattr(torch, dtype))
    sync()
    t = time.perf_counter()
    rows = evaluate.evaluate_model(model, tokenizer, evaluate.EvalSettings(
        {"synth_pretrain_ppl": "pretrain"}, {"pretrain_heldout": data}, batch_size=a.batch_size, max_length=a.seq_len))
    sync()
    eval_s = time.perf_counter() - t
    eval_tokens = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in
                      [json.loads(line)["text"] for line in data.read_text().splitlines()])
    eval_tps = eval_tokens / eval_s

    res = {
        "source": source, "device": device, "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "compute_dtype": dtype, "parameters": n_params, "load_s": load_s,
        "train": {"steps": a.steps, "batch_size": a.batch_size, "seq_len": a.seq_len, "tokens_per_s": train_tps,
                  "mfu": 6 * n_params * train_tps / peak, "final_loss": log[-1]["loss"]},
        "eval": {"docs": a.eval_docs, "tokens_per_s": eval_tps, "mfu": 2 * n_params * eval_tps / peak,
                 "loss": next(r["value"] for r in rows if r["metric"] == "loss")},
        "peak_flops": peak, "peak_source": peak_source, "peak_memory_gb": peak_memory_gb(device),
    }
    print(f"\n{'':12}{'tokens/s':>12}{'MFU':>8}")
    print(f"{'fine-tune':12}{train_tps:>12,.0f}{100 * res['train']['mfu']:>7.1f}%")
    print(f"{'evaluate':12}{eval_tps:>12,.0f}{100 * res['eval']['mfu']:>7.1f}%")
    print(f"peak memory {res['peak_memory_gb']:.2f} GB ({'CUDA allocated' if device.startswith('cuda') else 'process RSS'});"
          f" load {load_s:.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
