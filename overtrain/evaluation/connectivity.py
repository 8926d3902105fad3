"""Linear mode connectivity between fine-tunes from different seeds, and model soups.

Do fine-tunes of one checkpoint land in one basin? Interpolate θ(α) = (1 − α)θ_a + αθ_b on an α
grid and evaluate every point (in memory; nothing is written): the barrier is how much worse the
path gets than its ends. Soups average the weights of several fine-tunes: uniform (all of them)
and greedy (Wortsman et al. 2022: ingredients ordered by held-out score, each kept only if the
soup's held-out score does not get worse).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Callable

from overtrain.evaluation.evaluate import EvalSettings, Evaluation
from overtrain.evaluation.results import write_result


def interpolate(state_a: dict, state_b: dict, alpha: float) -> dict:
    """(1 − α)·a + α·b for floating tensors (integer buffers are taken from a)."""
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        out[k] = (1 - alpha) * a + alpha * b if a.is_floating_point() else a
    return out


def average(states: list[dict]) -> dict:
    out = {}
    for k, first in states[0].items():
        if first.is_floating_point():
            out[k] = sum(s[k] for s in states) / len(states)
        else:
            out[k] = first
    return out


def l2_distance(state_a: dict, state_b: dict) -> float:
    total = 0.0
    for k, a in state_a.items():
        if a.is_floating_point():
            total += float((a.double() - state_b[k].double()).pow(2).sum())
    return total**0.5


def linear_barrier(values: list[float], alphas: list[float], higher_is_better: bool) -> float:
    """Entezari et al.'s barrier: the path's worst excess over the straight line between its ends,
    max_α [L(α) − ((1 − α)L(0) + αL(1))] (0 for a perfectly linear path whose ends differ)."""
    line = [(1 - a) * values[0] + a * values[-1] for a in alphas]
    gaps = [(y - v) if higher_is_better else (v - y) for v, y in zip(values, line)]
    return max(gaps)


def barrier(values: list[float], higher_is_better: bool) -> float:
    """Worst point of the path compared with the mean of its endpoints (≥ 0 when the path sags).

    For a loss: max_α L(α) − (L(0) + L(1))/2; for an accuracy: (A(0) + A(1))/2 − min_α A(α).
    """
    ends = (values[0] + values[-1]) / 2
    return ends - min(values) if higher_is_better else max(values) - ends


def greedy_soup(
    ingredients: list, score: Callable[[list], float], higher_is_better: bool
) -> list:
    """Indices (into `ingredients`) of the greedy soup.

    `score(subset)` is the held-out score of the soup of `subset`. Ingredients are tried in the
    order of their own scores, best first; one is kept if the soup does not get worse.
    """
    sign = 1 if higher_is_better else -1
    order = sorted(range(len(ingredients)), key=lambda i: -sign * score([i]))
    chosen = [order[0]]
    best = score(chosen)
    for i in order[1:]:
        trial = score(chosen + [i])
        if sign * trial >= sign * best:
            chosen, best = chosen + [i], trial
    return chosen


def _on_cpu(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def run(checkpoint_dir: str | Path, finetuned: dict[int, str | Path], out_json: str | Path, labels: dict,
        settings: EvalSettings, *, alphas: list[float], select: dict) -> dict:
    """Interpolate every pair of seeds, build uniform and greedy soups, evaluate with lm-eval.

    One model sits on the device; every seed's weights wait on the CPU (at 7B, 2N copies on the
    device would not fit)."""
    import json

    import torch

    from overtrain.models import load_variant

    s = settings
    seeds = sorted(finetuned)
    diverged = [s_ for s_ in seeds if json.loads(Path(finetuned[s_], "meta.json").read_text()).get("diverged")]
    if diverged:
        print(f"no interpolation: the fine-tunes of seeds {diverged} diverged")
        return write_result(out_json, labels, "diverged", diverged_seeds=diverged, interpolation=[], barriers=[],
                            soups=[])
    probe, tokenizer = load_variant(checkpoint_dir, finetuned[seeds[0]], device=s.device, dtype=s.dtype,
                                    trust_remote_code=s.trust_remote_code)
    states = {seeds[0]: _on_cpu(probe)}
    for seed in seeds[1:]:
        states[seed] = _on_cpu(load_variant(checkpoint_dir, finetuned[seed], device=s.device, dtype=s.dtype,
                                            trust_remote_code=s.trust_remote_code)[0])
    evaluation = Evaluation(probe, tokenizer, s)
    cache: dict = {}
    planned = len(list(itertools.combinations(seeds, 2))) * len(alphas) + len(seeds) + 1  # + soups
    started = time.perf_counter()

    def evaluate_state(state: dict, key) -> list[dict]:
        if key not in cache:
            with torch.no_grad():
                probe.load_state_dict(state)
            cache[key] = evaluation.rows()
            elapsed = time.perf_counter() - started
            print(f"[connectivity] {len(cache)}/~{planned} evaluations ({key}); elapsed {elapsed:.0f}s "
                  f"eta {elapsed / len(cache) * max(0, planned - len(cache)):.0f}s", flush=True)
        return cache[key]

    def value(rows: list[dict], task: str, metric: str) -> float:
        found = [r["value"] for r in rows if r["eval_task"] == task and r["metric"] == metric]
        if not found:
            raise KeyError(f"connectivity: no {metric!r} of task {task!r} on the path (tasks evaluated: "
                           f"{sorted({r['eval_task'] for r in rows})}); add it to connectivity.tasks")
        return found[0]

    interpolation, barriers = [], []
    for sa, sb in itertools.combinations(seeds, 2):
        path = []
        for alpha in alphas:
            key = ("endpoint", sa) if alpha == 0 else ("endpoint", sb) if alpha == 1 else (sa, sb, alpha)
            rows = evaluate_state(interpolate(states[sa], states[sb], alpha), key)
            path.append(rows)
            interpolation += [{**r, "seeds": f"{sa}+{sb}", "alpha": alpha} for r in rows]
        for r0 in path[0]:
            task, metric = r0["eval_task"], r0["metric"]
            if metric not in ("loss", "acc"):
                continue
            curve = [value(rows, task, metric) for rows in path]
            higher = metric == "acc"
            barriers.append(
                {"seeds": f"{sa}+{sb}", "eval_task": task, "split": r0["split"], "metric": metric,
                 "barrier": barrier(curve, higher_is_better=higher)}
            )
            barriers.append(
                {"seeds": f"{sa}+{sb}", "eval_task": task, "split": r0["split"], "metric": f"{metric}_linear",
                 "barrier": linear_barrier(curve, alphas, higher_is_better=higher)}
            )
        barriers.append(
            {"seeds": f"{sa}+{sb}", "eval_task": None, "split": None, "metric": "l2_distance",
             "barrier": l2_distance(states[sa], states[sb])}
        )

    higher = select["higher_is_better"]

    def soup_score(subset: list[int]) -> float:
        chosen = [seeds[i] for i in subset]
        key = ("endpoint", chosen[0]) if len(chosen) == 1 else ("soup", tuple(sorted(chosen)))
        rows = evaluate_state(average([states[s] for s in chosen]), key)
        return value(rows, select["task"], select["metric"])

    greedy = [seeds[i] for i in greedy_soup(seeds, soup_score, higher)]
    soups = []
    for name, members in (("uniform", seeds), ("greedy", greedy)):
        key = ("endpoint", members[0]) if len(members) == 1 else ("soup", tuple(sorted(members)))
        rows = evaluate_state(average([states[s] for s in members]), key)
        soups += [{**r, "soup": name, "seeds": "+".join(map(str, members))} for r in rows]
    return write_result(out_json, labels, "ok", model=probe, batch_size=s.batch_size, interpolation=interpolation,
                        barriers=barriers, soups=soups)

