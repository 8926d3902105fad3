"""Every figure degrades to what a study measured: a study without held-out pretraining loss,
perturbations, connectivity or learning-rate selection still gets every figure."""

import pandas as pd
import pytest

from overtrain.analysis import analyses, catalog, plots, train_logs
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
    """The analyses rule's tables and every registered figure, from a study that measured only
    part of what they draw."""
    metrics = study(pretrain, perturb)
    select = {"task": "own", "metric": "loss", "higher_is_better": False}
    computed = analyses.compute(metrics, [], select, n_boot=20, min_effect=0.01)
    assert list(computed["best_lr"]["lr"]) == [1e-5, 1e-5]
    assert list(computed) == catalog.table_names()
    curves = pd.DataFrame(columns=train_logs.COLUMNS)  # results imported from elsewhere: no training job
    plots.draw_all({**computed, "metrics": metrics, "training_curves": curves}, lambda name: [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"])
    for name in catalog.figure_names():
        assert all((tmp_path / f"{name}.{ext}").stat().st_size > 1000 for ext in ("png", "pdf")), name


def test_every_figure_and_table_is_known_to_the_workflow_and_has_a_caption():
    from conftest import REPO

    assert catalog.figure_names() == list(plots.FIGURES)
    for name in catalog.figure_names():
        assert (REPO / "report" / f"{name}.rst").exists(), name
    for name in catalog.table_names():
        assert (REPO / "report" / f"table_{name}.rst").exists(), name


def test_a_line_has_a_band_only_with_replicates_and_a_measurement_turned_off_says_so(tmp_path):
    import matplotlib.pyplot as plt

    from overtrain.analysis import drawing

    fig, ax = plt.subplots()
    one = pd.DataFrame({"tokens": [1, 2], "value": [1.0, 2.0], "pretrain_seed": [0, 0], "seed": [0, 0]})
    drawing.band(ax, one, "one replicate")
    assert len(ax.lines) == 1 and not ax.collections  # no interval to draw
    three = pd.concat([one.assign(pretrain_seed=s, value=one["value"] + s) for s in range(3)])
    drawing.band(ax, three, "three replicates")
    assert len(ax.lines) == 2 and len(ax.collections) == 1
    drawing.nothing_measured([tmp_path / "off.png"], "sharpness is off")
    assert (tmp_path / "off.png").stat().st_size > 1000
