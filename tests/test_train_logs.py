"""The training curves table and figure: every training job's log, labelled from where the job
wrote it, drawn per budget, stable run, decay branch and fine-tuning setting."""

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from overtrain.analysis import plots, train_logs


def write(d, meta, log: str):
    d.mkdir(parents=True)
    if meta is not None:
        (d / "meta.json").write_text(json.dumps(meta))
    if log:
        (d / "train_log.csv").write_text(log)
    return d


@pytest.fixture()
def study(tmp_path):
    """A WSD study's jobs (two budgets of one seed, its stable run in two segments, two fine-tunes
    of 6 steps at 3 steps an epoch) and a hub checkpoint, which has no train log."""
    root = tmp_path / "results" / "x"
    stable = "step,tokens,lr,loss\n" + "".join(f"{s},{(s + 1) * 100},0.003,{5 - s / 10}\n" for s in range(8))
    dirs = [write(root / "stable/tiny/s0/tok500", None, stable.split("\n", 5)[0] + "\n" + "\n".join(stable.split("\n")[1:5]) + "\n"),
            write(root / "stable/tiny/s0/tok1000", None, "step,tokens,lr,loss\n" + "\n".join(stable.split("\n")[5:])),
            write(root / "checkpoints/tiny/tok500-s0", {"budget_tokens": 500, "pretrain_seed": 0, "branched_at_step": 3},
                  "step,tokens,lr,loss\n3,400,0.003,4.6\n4,500,0.001,4.4\n"),
            write(root / "checkpoints/tiny/tok1000-s0", {"budget_tokens": 1000, "pretrain_seed": 0, "branched_at_step": 7},
                  "step,tokens,lr,loss\n7,800,0.003,4.2\n8,900,0.002,4.0\n9,1000,0.001,3.9\n"),
            write(root / "checkpoints/hub/step1000", {"tokens": 10**9}, "")]
    ft = "step,epoch,lr,loss\n" + "".join(f"{s},{s / 3},0.001,{3 - s / 10}\n" for s in range(6))
    for ckpt in ("tok500-s0", "tok1000-s0"):
        dirs.append(write(root / f"finetuned/tiny/{ckpt}/synth_ft/full-lr0.001-s0", {"diverged": False}, ft))
    return root, dirs


def test_every_logged_step_is_one_labelled_row(study):
    root, dirs = study
    curves = train_logs.read(root, dirs)
    assert list(curves.columns) == train_logs.COLUMNS
    assert curves.groupby("phase").size().to_dict() == {"decay": 5, "finetune": 12, "stable": 8}
    stable = curves[curves["phase"] == "stable"]
    assert stable["pretrain_seed"].eq(0).all() and list(stable["step"]) == list(range(8))  # segments in order
    decay = curves[curves["phase"] == "decay"].set_index("step")
    assert decay.loc[9, "tokens"] == 1000 and decay.loc[9, "tokens_seen"] == 1000 and decay.loc[9, "step_lr"] == 0.001
    ft = curves[curves["phase"] == "finetune"]
    assert set(ft["tokens"]) == {500, 1000} and ft["lr"].eq(0.001).all() and ft["ft_method"].eq("full").all()
    run = ft[ft["ckpt"] == "tok500-s0"]
    assert train_logs.epoch_boundaries(run) == [3]  # the step that starts the second pass
    with pytest.raises(ValueError, match="not a training job"):
        train_logs.read(root, [write(root / "evals/tiny/x", None, "step,lr,loss\n0,1,1\n")])


def test_the_curves_figure_has_a_pretraining_panel_and_one_per_fine_tuning_setting(study, tmp_path, monkeypatch):
    root, dirs = study
    curves = train_logs.read(root, dirs)
    # a second learning rate: a second fine-tuning panel
    curves = pd.concat([curves, curves[curves["phase"] == "finetune"].assign(lr=0.003)], ignore_index=True)
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, paths: drawn.append(fig))
    plots.training_curves(curves, [tmp_path / "c.png"])
    axes = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["tiny: pretraining", "tiny: synth_ft, full, lr=0.001",
                                               "tiny: synth_ft, full, lr=0.003"]
    pretraining, finetuning = axes[0], axes[1]
    labels = [line.get_label() for line in pretraining.lines]
    assert labels == ["500 budget (decay branch)", "1K budget (decay branch)", "stable run (constant lr)"]
    assert [line.get_label() for line in finetuning.lines] == ["from 500 tokens", "from 1K tokens", "epoch boundary"]
    assert finetuning.lines[-1].get_xdata()[0] == 3
    plt.close("all")
    # a study that trained nothing says so instead of drawing empty panels
    plots.training_curves(pd.DataFrame(columns=train_logs.COLUMNS), [tmp_path / "none.png"])
    assert (tmp_path / "none.png").stat().st_size > 1000
