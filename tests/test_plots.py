"""Every figure degrades to what a study measured: a study without held-out pretraining loss,
perturbations, connectivity or learning-rate selection still gets every figure."""

import pandas as pd
import pytest

from overtrain.analysis import plots, tables
from overtrain.analysis.tables import METRIC_COLUMNS


def rows(**fixed):
    base = {c: None for c in METRIC_COLUMNS}
    return [{**base, **fixed, "tokens": t, "ckpt": f"c{t}", "value": v} for t, v in ((10**9, 0.4), (2 * 10**9, 0.5))]


def study(pretrain: bool, perturb: bool) -> pd.DataFrame:
    out = rows(model="m", variant="base", eval_task="ft_x_test", split="id", metric="loss")
    out += rows(model="m", variant="finetuned", ft_task="x", ft_method="full", lr=1e-5, l2=0.0, seed=0,
                eval_task="ft_x_test", split="id", metric="loss")
    out += rows(model="m", variant="finetuned", ft_task="x", ft_method="full", lr=1e-5, l2=0.0, seed=0,
                eval_task="ft_x_val", split="val", metric="loss")
    out += rows(model="m", variant="base", eval_task="arc_easy", split="ood", metric="acc")
    if pretrain:
        out += rows(model="m", variant="base", eval_task="p", split="pretrain", metric="loss")
    if perturb:
        out += rows(model="m", variant="perturbed", perturbation="gaussian", gamma=0.1, seed=0, eval_task="arc_easy",
                    split="ood", metric="acc")
    df = pd.DataFrame(out, columns=METRIC_COLUMNS)
    return df.astype({"tokens": "int64", "lr": "float64", "gamma": "float64", "l2": "float64", "alpha": "float64"})


@pytest.mark.parametrize("pretrain,perturb", [(False, False), (False, True), (True, False)])
def test_every_figure_is_drawn_from_whatever_was_measured(tmp_path, pretrain, perturb):
    metrics = study(pretrain, perturb)
    best = tables.best_learning_rates(metrics, {"task": "own", "metric": "loss", "higher_is_better": False})
    assert list(best["lr"]) == [1e-5, 1e-5]
    tuned = tables.tuned_metrics(metrics, best)
    gain = tables.finetune_gain(metrics)
    barriers, soups = tables.connectivity_tables([])
    calls = {
        "noise": lambda p: plots.noise_pretrain_loss(metrics, p),
        "ft_pt": lambda p: plots.finetune_pretrain_loss(metrics, p),
        "ft_task": lambda p: plots.finetune_task_metric(metrics, p),
        "quant": lambda p: plots.quantization_pretrain_loss(metrics, p),
        "tuned": lambda p: plots.tuned_learning_rate(tuned, best, p),
        "gain": lambda p: plots.finetune_gain(gain, metrics, p),
        "prompts": lambda p: plots.prompt_sensitivity(metrics, p),
        "conn": lambda p: plots.connectivity(barriers, soups, p),
    }
    for name, draw in calls.items():
        paths = [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"]
        draw(paths)
        assert all(p.stat().st_size > 1000 for p in paths), name
    for table in (tables.pretrain_loss_by_variant(metrics), tables.inflection_table(metrics, best, 20)):
        assert isinstance(table, pd.DataFrame)
