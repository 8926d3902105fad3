"""AlpacaEval-style win rates with a local judge: a model's responses to a fixed prompt set,
judged pairwise against a fixed reference model's responses.

The judge is any Hugging Face causal LM, asked which of two outputs follows the instruction
better (the probability of " Output (a)" vs " Output (b)" after the question), or a reward model
(P(model beats reference) = σ(r_model − r_reference), Bradley–Terry). The LM judge sees both
orders and the two are averaged, which cancels its position bias. Win rate = 100 × the mean
preference. The length-controlled win rate follows AlpacaEval 2's idea with a documented
simplification: a logistic model of the preference on tanh(standardised length difference)
(characters, reference − model) is fitted, and the win rate is read off at equal length
(100·σ(intercept)); AlpacaEval 2 also conditions on instruction difficulty, which needs its
Hub-hosted side files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from overtrain.evaluation.results import checkpoint_labels, write_result
from overtrain.sources.data import plain_template

TEMPLATE = (
    "Below are an instruction and two outputs. Decide which output follows the instruction better: "
    "more helpful, more accurate, more relevant.\n\n"
    "# Instruction:\n{instruction}\n\n# Output (a):\n{a}\n\n# Output (b):\n{b}\n\n"
    "# Which is better, Output (a) or Output (b)? Answer with Output (a) or Output (b).\nPreferred:"
)
CHOICES = (" Output (a)", " Output (b)")


def chat_prompt(tokenizer, instruction: str) -> str:
    """The generation prompt for one user instruction: the tokenizer's chat template, or the
    plain template fine-tunes are trained with when it has none (overtrain.sources.data.render_chat)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
                                             tokenize=False)
    return plain_template([{"role": "user", "content": instruction}])


def generate(model, tokenizer, instructions: list[str], *, max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy responses (decoded, special tokens dropped), batched with left padding."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        for i in range(0, len(instructions), batch_size):
            prompts = [chat_prompt(tokenizer, x) for x in instructions[i : i + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
            new = ids[:, batch["input_ids"].shape[1] :]
            out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return out


def _continuation_logprob(model, tokenizer, prompt: str, continuation: str) -> float:
    """Sum of log p(continuation tokens | prompt)."""
    import torch

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    start = len(p) if full[: len(p)] == p else len(p) - 1  # a merge at the boundary: score from it
    ids = torch.tensor([full], device=next(model.parameters()).device)
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1)
    positions = torch.arange(start - 1, len(full) - 1, device=ids.device)
    return float(logp[positions, ids[0, start:]].sum())


def lm_preference(judge, tokenizer, instruction: str, model_output: str, reference_output: str) -> float:
    """P(model output better) from an LM judge, averaged over both orders (position bias cancels)."""

    def p_first(a: str, b: str) -> float:
        prompt = TEMPLATE.format(instruction=instruction, a=a, b=b)
        la, lb = (_continuation_logprob(judge, tokenizer, prompt, c) for c in CHOICES)
        return 1.0 / (1.0 + math.exp(lb - la))

    return 0.5 * (p_first(model_output, reference_output) + 1.0 - p_first(reference_output, model_output))


def reward_preference(rm, tokenizer, instruction: str, model_output: str, reference_output: str) -> float:
    """P(model output better) = σ(r_model − r_reference) from a reward model (num_labels = 1)."""
    import torch

    def reward(output: str) -> float:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}], tokenize=False)
        else:
            text = plain_template([{"role": "user", "content": instruction}]) + output
        batch = tokenizer(text, return_tensors="pt", truncation=True).to(next(rm.parameters()).device)
        with torch.no_grad():
            return float(rm(**batch).logits[0, 0])

    return 1.0 / (1.0 + math.exp(reward(reference_output) - reward(model_output)))


def win_rate(preferences: list[float]) -> float:
    return 100.0 * sum(preferences) / len(preferences)


def length_controlled_win_rate(preferences: list[float], model_lengths: list[int], reference_lengths: list[int]) -> float:
    """Win rate at equal length: fit P = σ(θ + φ·tanh(Δ/sd(Δ))), Δ = reference − model length in
    characters, by penalised maximum likelihood on the soft preferences; return 100·σ(θ)."""
    import numpy as np
    import scipy.optimize
    import scipy.special

    pref = np.asarray(preferences, float)
    delta = np.asarray(reference_lengths, float) - np.asarray(model_lengths, float)
    sd = delta.std()
    x = np.stack([np.ones_like(delta), np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)], 1)

    def nll(w):
        z = x @ w
        return float(np.mean(np.logaddexp(0, z) - pref * z) + 1e-4 * (w @ w))

    w = scipy.optimize.minimize(nll, np.zeros(2), method="BFGS").x
    return float(100 * scipy.special.expit(w[0]))


def load_judge(judge_dir: str | Path, kind: str, device: str, dtype: str, trust_remote_code: bool = False):
    """The judge (LM or reward model) and its tokenizer, from safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from overtrain.models import require_safetensors

    require_safetensors(judge_dir)
    cls = AutoModelForCausalLM if kind == "lm" else AutoModelForSequenceClassification
    model = cls.from_pretrained(str(judge_dir), use_safetensors=True, dtype=getattr(torch, dtype),
                                trust_remote_code=trust_remote_code).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(judge_dir), trust_remote_code=trust_remote_code)
    if kind == "reward" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return model, tokenizer


def judgment_rows(preferences: list[float], model_outputs: list[str], reference_outputs: list[str]) -> list[dict]:
    """Tidy rows of one variant's judgments (eval_task `winrate`, split id)."""
    lm, lr = [len(x) for x in model_outputs], [len(x) for x in reference_outputs]
    return [
        {"eval_task": "winrate", "split": "id", "metric": "win_rate", "value": win_rate(preferences)},
        {"eval_task": "winrate", "split": "id", "metric": "lc_win_rate",
         "value": length_controlled_win_rate(preferences, lm, lr)},
        {"eval_task": "winrate", "split": "id", "metric": "mean_length", "value": sum(lm) / len(lm)},
    ]


def read_prompts(path: str | Path) -> list[dict]:
    return json.loads(Path(path).read_text())


def prompt_set(source: str, n: int, test_dir: str | Path | None = None) -> list[dict]:
    """The fixed prompt set: AlpacaEval's 805 instructions with its reference outputs (the Hub
    dataset tatsu-lab/alpaca_eval, from the network or the HF cache), or the instructions of a
    fine-tuning task's held-out test split (prepared by overtrain.sources.data)."""
    if source == "alpaca_eval":
        from huggingface_hub import hf_hub_download

        path = hf_hub_download("tatsu-lab/alpaca_eval", "alpaca_eval.json", repo_type="dataset")
        rows = json.loads(Path(path).read_text())
        return [{"instruction": r["instruction"], "reference": r["output"]} for r in rows][:n]
    rows = [json.loads(line) for line in Path(test_dir, "test.jsonl").read_text().splitlines()]
    prompts = [{"instruction": r["instruction"]} for r in rows if r.get("instruction")][:n]
    if not prompts:
        raise ValueError(f"evaluate.judge.prompts: {source!r} has no instruction rows in its test split "
                         "(it must be an instruction task: format hh, messages or alpaca)")
    return prompts


def reference_outputs(prompts: list[dict], out_json: str | Path, *, reference_dir: str | Path | None,
                      max_new_tokens: int, batch_size: int, device: str, dtype: str, label: str) -> dict:
    """The reference responses every variant is judged against: the prompt set's own (AlpacaEval)
    or a fixed model's greedy generations."""
    from overtrain.atomic import atomic_write_json
    from overtrain.models import load_variant

    if reference_dir is None:
        outputs = [p["reference"] for p in prompts]
    else:
        model, tokenizer = load_variant(reference_dir, device=device, dtype=dtype)
        outputs = generate(model, tokenizer, [p["instruction"] for p in prompts], max_new_tokens=max_new_tokens,
                           batch_size=batch_size)
    result = {"reference": label, "instructions": [p["instruction"] for p in prompts], "outputs": outputs}
    atomic_write_json(out_json, result)
    return result


def generate_variant(
    out_json: str | Path,
    checkpoint_dir: str | Path,
    finetuned_dir: str | Path | None,
    labels: dict,
    *,
    reference_json: str | Path,
    max_new_tokens: int,
    batch_size: int,
    device: str,
    dtype: str,
    trust_remote_code: bool = False,
) -> dict:
    """A variant's greedy responses to the prompt set (a diverged fine-tune has none)."""
    from overtrain.models import load_variant

    instructions = json.loads(Path(reference_json).read_text())["instructions"]
    if finetuned_dir is not None and json.loads(Path(finetuned_dir, "meta.json").read_text()).get("diverged"):
        return write_result(out_json, labels, "diverged", instructions=instructions, outputs=[])
    model, tokenizer = load_variant(checkpoint_dir, finetuned_dir, None, trust_remote_code, device, dtype)
    outputs = generate(model, tokenizer, instructions, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return write_result(out_json, labels, "ok", model=model, batch_size=batch_size, instructions=instructions,
                        outputs=outputs)


def judge_generations(
    out_json: str | Path,
    generations_json: str | Path,
    checkpoint_dir: str | Path,
    *,
    reference_json: str | Path,
    judge_dir: str | Path,
    kind: str,
    device: str,
    dtype: str,
) -> dict:
    """Judge a variant's responses against the reference; write {labels, tokens, rows}. The
    result's `runtime` is the generating variant's (its rows describe that model); the judge's
    own is `judge_runtime`."""
    from overtrain.evaluation.results import runtime_info

    generations = json.loads(Path(generations_json).read_text())
    reference = json.loads(Path(reference_json).read_text())
    labels = {k: v for k, v in generations.items() if k not in ("status", "instructions", "outputs", "versions")}
    labels.update(checkpoint_labels(checkpoint_dir))
    if generations["status"] != "ok":
        return write_result(out_json, labels, generations["status"], rows=[])
    judge, judge_tokenizer = load_judge(judge_dir, kind, device, dtype)
    prefer = lm_preference if kind == "lm" else reward_preference
    preferences = [prefer(judge, judge_tokenizer, i, m, r)
                   for i, m, r in zip(reference["instructions"], generations["outputs"], reference["outputs"])]
    rows = judgment_rows(preferences, generations["outputs"], reference["outputs"])
    return write_result(out_json, labels, "ok", rows=rows, reference=reference["reference"], judge=str(judge_dir),
                        judge_kind=kind, preferences=preferences, judge_runtime=runtime_info(judge, None))
