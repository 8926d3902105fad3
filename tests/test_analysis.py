import json

import pandas as pd
import pytest

from overtrain.analysis import tables
from overtrain.analysis.formatting import format_tokens


def write_eval(path, **labels):
    rows = [
        {"eval_task": "synth_pretrain_ppl", "split": "pretrain", "metric": "loss", "value": labels.pop("pt")},
        {"eval_task": "synth_ft_mc", "split": "id", "metric": "acc", "value": 0.5},
    ]
    path.write_text(json.dumps({**labels, "rows": rows}))
    return path


def test_metrics_table_follows_the_contract(tmp_path):
    files = [
        write_eval(tmp_path / "a.json", model="m", ckpt="tok2", tokens=2000, variant="base", pt=2.0),
        write_eval(tmp_path / "b.json", model="m", ckpt="tok1", tokens=1000, variant="base", pt=3.0),
        write_eval(tmp_path / "c.json", model="m", ckpt="tok1", tokens=1000, variant="finetuned", ft_task="synth_ft", lr=1e-3, seed=0, pt=3.5),
        write_eval(tmp_path / "d.json", model="m", ckpt="tok1", tokens=1000, variant="perturbed", perturbation="gaussian", gamma=0.1, seed=0, pt=3.2),
    ]
    df = tables.metrics_table(files)
    assert list(df.columns) == tables.METRIC_COLUMNS
    contract = [c for c in df.columns if c in tables.CONTRACT_COLUMNS]
    assert contract == tables.CONTRACT_COLUMNS  # the contract's columns, in its order
    assert len(df) == 9  # 4 evaluations × 2 rows + 1 forgetting row
    assert df["tokens"].tolist()[:7] == [1000] * 7  # sorted by tokens, then variant
    assert df["variant"].tolist()[:7] == ["base"] * 2 + ["finetuned"] * 3 + ["perturbed"] * 2
    forgetting = df[df["metric"] == "forgetting_loss"]
    assert len(forgetting) == 1 and forgetting["value"].item() == pytest.approx(0.5)
    assert forgetting["lr"].item() == 1e-3 and forgetting["split"].item() == "pretrain"
    base = df[df["variant"] == "base"]
    assert base["lr"].isna().all() and base["gamma"].isna().all() and base["seed"].isna().all()
    out = tmp_path / "metrics.csv"
    tables.write_csv(df, out)
    back = pd.read_csv(out)
    assert list(back.columns) == tables.METRIC_COLUMNS
    assert ",base,,,,,,,,,,,,synth_ft_mc,id,acc,0.5" in out.read_text()  # empty cells where n/a

    summary = tables.pretrain_loss_by_variant(df)
    row = summary[(summary["tokens"] == 1000) & (summary["condition"] == "noise γ=0.1")]
    assert row["increase"].item() == pytest.approx(0.2)
    row = summary[(summary["tokens"] == 1000) & (summary["condition"] == "fine-tune full lr=0.001")]
    assert row["increase"].item() == pytest.approx(0.5)


def test_unknown_variant_is_rejected(tmp_path):
    f = write_eval(tmp_path / "x.json", model="m", ckpt="c", tokens=1, variant="weird", pt=1.0)
    with pytest.raises(ValueError, match="unknown variants"):
        tables.metrics_table([f])


@pytest.mark.parametrize(
    "n,label",
    [(124928, "125K"), (249856, "250K"), (999424, "1M"), (3999744, "4M"), (2.303e12, "2.3T"), (84e9, "84B"), (500, "500")],
)
def test_token_labels(n, label):
    assert format_tokens(n) == label


def test_prompt_spread_rows(tmp_path):
    rows = [
        {"eval_task": t, "split": "id", "metric": "acc", "value": v}
        for t, v in [("synth_ft_mc", 0.7), ("synth_ft_mc_instruct", 0.4), ("synth_ft_mc_raw", 0.55)]
    ]
    f = tmp_path / "e.json"
    f.write_text(json.dumps({"model": "m", "ckpt": "c", "tokens": 5, "variant": "base", "rows": rows}))
    df = tables.metrics_table([f])
    spread = df[df["metric"] == "prompt_spread_acc"]
    assert len(spread) == 1 and spread["value"].item() == pytest.approx(0.3)
    assert spread["eval_task"].item() == "synth_ft_mc"


def test_pretrain_loss_summary_without_perturbations(tmp_path):
    files = [
        write_eval(tmp_path / "a.json", model="m", ckpt="c", tokens=10, variant="base", pt=2.0),
        write_eval(tmp_path / "b.json", model="m", ckpt="c", tokens=10, variant="finetuned", ft_task="t", lr=1e-3, seed=0, pt=2.5),
    ]
    summary = tables.pretrain_loss_by_variant(tables.metrics_table(files))
    assert summary["condition"].tolist() == ["base", "fine-tune full lr=0.001"]
    assert summary["increase"].tolist() == pytest.approx([0.0, 0.5])


def test_a_model_whose_results_mix_devices_or_dtypes_is_refused(tmp_path):
    """Results say how they were made (evaluation.results.write_result); the tidy table refuses a
    model whose numbers come from two device types or dtypes, naming a file of each."""
    def result(name, device, dtype, model="m"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"model": model, "ckpt": name, "tokens": 10, "variant": "base", "status": "ok",
                                    "rows": [{"eval_task": "t", "split": "id", "metric": "acc", "value": 0.5}],
                                    "runtime": {"device": device, "dtype": dtype}}))
        return path

    same = [result("a", "cuda:0", "bfloat16"), result("b", "cuda:1", "bfloat16"), result("c", "cpu", "float32", "n")]
    assert len(tables.metrics_table(same)) == 3  # two GPUs of one kind; another model on the CPU
    with pytest.raises(ValueError, match=r"model 'm'.*cpu float32: e\.g\. .*d\.json.*cuda bfloat16"):
        tables.metrics_table(same + [result("d", "cpu", "float32")])


def test_the_study_log_lists_the_fine_tunes_that_diverged(tmp_path):
    base = {c: None for c in tables.METRIC_COLUMNS}
    rows = [{**base, "model": "m", "ckpt": f"c{i}", "tokens": 10, "variant": "finetuned", "ft_task": "t",
             "ft_method": "full", "lr": lr, "seed": 0, "l2": 0.0, "eval_task": "t", "split": "ft_train",
             "metric": "diverged", "value": flag} for i, (lr, flag) in enumerate([(1e-3, 0.0), (50.0, 1.0)])]
    path = tmp_path / "metrics.csv"
    pd.DataFrame(rows, columns=tables.METRIC_COLUMNS).to_csv(path, index=False)
    assert tables.diverged_summary(path) == ("1 fine-tune(s) diverged (stopped early, not evaluated; never chosen "
                                             "as best lr):\n  m c1 t full lr=50.0 seed=0")
    pd.DataFrame(rows[:1], columns=tables.METRIC_COLUMNS).to_csv(path, index=False)
    assert tables.diverged_summary(path) == "No fine-tune diverged."
    assert tables.diverged_summary(tmp_path / "missing.csv") == ""


def test_two_studies_compared_claim_by_claim(tmp_path):
    """overtrain compare: verdicts that changed, effects that moved, rates and T* that differ."""
    from overtrain.analysis import compare

    def study(name, verdict, effect, lr, t_star):
        d = tmp_path / name / "results" / "x" / "tables"
        d.mkdir(parents=True)
        pd.DataFrame([{"model": "m", "hypothesis": "h", "condition": "c", "effect": effect, "ci_low": effect - 0.01,
                       "ci_high": effect + 0.01, "n_seeds": 3, "verdict": verdict, "min_effect": 0.01},
                      {"model": "m", "hypothesis": "same", "condition": "c", "effect": 0.5, "ci_low": 0.4,
                       "ci_high": 0.6, "n_seeds": 3, "verdict": "supported", "min_effect": 0.01}]).to_csv(d / "hypotheses.csv")
        pd.DataFrame([{"model": "m", "ft_task": "t", "ft_method": "full", "l2": 0.0, "tokens": 100, "pretrain_seed": 0,
                       "lr": lr}]).to_csv(d / "best_lr.csv")
        pd.DataFrame([{"model": "m", "condition": "noise", "eval_task": "p", "metric": "loss", "t_star": t_star}]).to_csv(
            d / "inflection.csv")
        return tmp_path / name

    result = compare.compare(study("a", "supported", 0.05, 1e-3, 200), study("b", "inconclusive", 0.005, 3e-4, 200))
    assert result["claims"] == 2 and [r["hypothesis"] for r in result["changed"]] == ["h"]
    assert result["changed"][0]["effect_change"] == pytest.approx(-0.045)
    assert [(r["lr_a"], r["lr_b"]) for r in result["learning_rates"]] == [(1e-3, 3e-4)] and result["t_star"] == []
    page = compare.markdown(result)
    assert "verdicts that differ: **1**" in page and "| m | h **changed** | c |" in page
    with pytest.raises(FileNotFoundError, match="no study's tables/hypotheses.csv"):
        compare.tables_dir(tmp_path)
