"""Image-conditioned evaluation of a LLaVA fine-tune (overtrain.training.llava composes it):
the token-mean response loss and multiple-choice accuracy of the image-text evaluation sets,
computed here because lm-eval's `hf-multimodal` model only generates (it has no
log-likelihood for images), and lm-eval's image-text benchmarks through `hf-multimodal`.
"""

from __future__ import annotations

import json
from pathlib import Path

from overtrain.evaluation.results import checkpoint_labels, write_result
from overtrain.training.llava import (
    IMAGE_TOKEN,
    LLAVA_FILE,
    ImageExamples,
    LlavaSpec,
    build,
    collate,
    encode,
    n_image_tokens,
)
from overtrain.training.loop import IGNORE

# the image-conditioned evaluation sets of a multimodal task → (data split, split in metrics.csv, metric)
EVAL_SETS = {
    "val": ("val", "val", "loss"),
    "test": ("test", "id", "loss"),
    "transcribe": ("transcribe", "id", "loss"),
    "mc": ("mc", "id", "acc"),
}


def eval_task_name(task: str, kind: str) -> str:
    """'synth_mm' + 'test' → 'synth_mm_test' (the eval_task column)."""
    return f"{task}_{kind}"


def _sequence_scores(model, examples: ImageExamples, processor, batch_size: int, device: str):
    """Per example: (summed log-likelihood of the labelled tokens, their count)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(examples.ids), batch_size):
            idx = list(range(start, min(start + batch_size, len(examples.ids))))
            batch = {k: v.to(device) for k, v in collate(examples, idx, processor).items()}
            labels = batch.pop("labels")
            logp = model(**batch, use_cache=False).logits[:, :-1].float().log_softmax(-1)
            target = labels[:, 1:]
            seen = target != IGNORE
            picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0] * seen
            out += list(zip(picked.sum(1).tolist(), seen.sum(1).tolist()))
    return out


def score(model, tokenizer, processor, image_id: int, rows, kind: str, *, select: str, max_len: int,
          batch_size: int, device: str) -> float:
    """Token-mean response loss (kind loss) or multiple-choice accuracy (kind acc) of `rows`."""
    n_image = n_image_tokens(model.config.vision_config, select)
    rows = list(rows)
    if kind == "loss":
        scores = _sequence_scores(model, encode(tokenizer, rows, image_id, n_image, max_len), processor,
                                  batch_size, device)
        return -sum(s for s, _ in scores) / max(1, sum(c for _, c in scores))
    flat = [{"image": r["image"], "prompt": r["prompt"], "completion": c} for r in rows for c in r["choices"]]
    examples = encode(tokenizer, flat, image_id, n_image, max_len)
    if examples.dropped:
        raise ValueError(f"{examples.dropped} multiple-choice answers do not fit max_length={max_len}")
    scores = [s for s, _ in _sequence_scores(model, examples, processor, batch_size, device)]
    k = len(rows[0]["choices"])
    right = [max(range(k), key=lambda j: scores[i * k + j]) == r["gold"] for i, r in enumerate(rows)]
    return sum(right) / len(right)


def benchmark_rows(model, tokenizer, processor, *, select: str, tasks: list[str], include: str | None,
                   limit: int | None, batch_size: int, device: str, dtype: str = "float32") -> list[dict]:
    """Image-text benchmarks through lm-eval's multimodal path (`hf-multimodal`, generative):
    the composed model and its LlavaProcessor are saved to a scratch directory lm-eval loads."""
    import tempfile

    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import LlavaProcessor

    from overtrain.evaluation.tasks import tidy_results

    with tempfile.TemporaryDirectory(prefix="overtrain-llava-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        LlavaProcessor(image_processor=processor, tokenizer=tokenizer, image_token=IMAGE_TOKEN,
                       patch_size=model.config.vision_config.patch_size, vision_feature_select_strategy=select,
                       num_additional_image_tokens=1).save_pretrained(tmp)
        results = lm_eval.simple_evaluate(
            model="hf-multimodal",
            model_args={"pretrained": tmp, "device": device, "dtype": dtype, "max_images": 1},
            tasks=list(tasks), task_manager=TaskManager(include_path=include), limit=limit,
            batch_size=batch_size, log_samples=False,
        )
    return tidy_results(results["results"], {t: "id" for t in tasks})


def evaluate(out_json: str | Path, checkpoint_dir: str | Path, vision_dir: str | Path,
             finetuned_dir: str | Path, data_dir: str | Path, labels: dict, *, task: str,
             limit: int | None, batch_size: int, max_len: int, device: str = "cpu", dtype: str = "float32",
             trust_remote_code: bool = False, benchmarks: list[str] | None = None,
             benchmark_include: str | None = None) -> dict:
    """The image-conditioned rows of one stage-2 fine-tune (the EVAL_SETS its data has, and the
    lm-eval `benchmarks`) in the job's device and dtype (as its text evaluation), written
    with how they were made."""
    import time

    from overtrain.sources.images import load_split

    labels = {**labels, **checkpoint_labels(checkpoint_dir)}
    meta = json.loads(Path(finetuned_dir, "meta.json").read_text())
    if meta.get("diverged"):
        print(f"not evaluated: the fine-tune diverged ({meta.get('diverged_reason')})")
        return write_result(out_json, labels, "diverged", rows=[])
    llava = json.loads(Path(finetuned_dir, LLAVA_FILE).read_text())
    spec = LlavaSpec(stage="full", lr=0.0, feature_layer=llava["feature_layer"], select=llava["select"],
                     trust_remote_code=trust_remote_code)
    model, tokenizer, processor, image_id = build(checkpoint_dir, vision_dir, spec, finetuned_dir, finetuned_dir, dtype)
    model.to(device).eval()
    sets = {k: v for k, v in EVAL_SETS.items() if Path(data_dir, f"{v[0]}.parquet").exists()}
    rows, started = [], time.perf_counter()
    for done, (kind, (split, where, metric)) in enumerate(sets.items(), 1):
        data = load_split(data_dir, split)
        if limit:
            data = data.select(range(min(limit, len(data))))
        value = score(model, tokenizer, processor, image_id, data, metric, select=spec.select, max_len=max_len,
                      batch_size=batch_size, device=device)
        rows.append({"eval_task": eval_task_name(task, kind), "split": where, "metric": metric, "value": value})
        elapsed = time.perf_counter() - started
        print(f"[evaluate] multimodal {done}/{len(sets)} {eval_task_name(task, kind)} {metric} {value:.4f}; "
              f"elapsed {elapsed:.0f}s eta {elapsed / done * (len(sets) - done):.0f}s", flush=True)
    if benchmarks:
        rows += benchmark_rows(model, tokenizer, processor, select=spec.select, tasks=benchmarks,
                               include=benchmark_include, limit=limit, batch_size=batch_size, device=device,
                               dtype=dtype)
        print(f"[evaluate] lm-eval hf-multimodal {', '.join(benchmarks)}: elapsed "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    return write_result(out_json, labels, "ok", model=model, batch_size=batch_size, rows=rows)
