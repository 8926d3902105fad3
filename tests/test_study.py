"""The Study: the config validated and completed once, and what the workflow derives from it."""

import copy
import re

import pytest
from conftest import MICRO, REPO, merge
from snakemake.utils import validate

from overtrain.config import ConfigError
from overtrain.study import SCHEMA, Study, user_config


def load(cfg: dict) -> Study:
    return Study.load(copy.deepcopy(cfg), REPO, lambda c: validate(c, str(SCHEMA)))


def test_the_micro_study_and_what_it_derives():
    study = load(MICRO)
    assert study.root == "results/micro"
    assert study.command == "snakemake --cores all --configfile configs/micro.yaml"
    assert study.checkpoints == [("tiny", "tok8192-s0"), ("tiny", "tok16384-s0"), ("tiny", "tok8192-s1"),
                                 ("tiny", "tok16384-s1")]
    assert study.first_checkpoint == {"tiny": "tok8192-s0"}
    assert study.replicates == 2  # pretraining seeds
    assert study.checkpoint_variants == ["base", "gauss-g0.5-s0", "rtn-int8"]
    # the base on its 6 tasks, each perturbed variant on the pretraining loss only
    assert study.checkpoint_evaluations == pytest.approx(1 + 2 / len(study.splits))
    assert study.corpus_eval_files == ["ft_heldout", "ft_mc", "ft_val", "pretrain_heldout"]
    assert study.eval_max_length("tiny") == MICRO["corpus"]["seq_len"] == study.train_max_length("tiny")
    assert not study.trust_remote_code("tiny")
    assert set(study.connectivity_splits("synth_ft")) <= set(study.finetuned_splits("synth_ft"))
    assert study.config["finetune"]["steps"] is None  # schema defaults filled in place


def test_an_old_key_name_still_works_and_both_names_are_refused():
    cfg = copy.deepcopy(MICRO)
    cfg["connectivity"]["alphas"] = cfg["connectivity"].pop("points")
    assert load(cfg).config["connectivity"]["points"] == MICRO["connectivity"]["points"]
    cfg["connectivity"]["points"] = 5
    with pytest.raises(ConfigError, match=r"connectivity.alphas: renamed connectivity.points"):
        load(cfg)


def test_bad_input_names_the_key_before_anything_runs():
    bad = copy.deepcopy(MICRO)
    bad["finetune"]["learning_rates"] = [-1e-3]
    with pytest.raises(ConfigError, match=r"finetune.learning_rates\[0\]: -0.001 is out of range; must be > 0"):
        load(bad)
    bad = copy.deepcopy(MICRO)
    bad["models"]["tiny"]["budgets"] = [100]
    with pytest.raises(ConfigError, match=r"models.tiny.budgets: \[100\] is less than one step"):
        load(bad)


def test_a_config_file_without_models_overrides_the_default(tmp_path):
    (tmp_path / "small.yaml").write_text("experiment: small\nfinetune: {learning_rates: [0.001]}\n")
    cfg = user_config(tmp_path / "small.yaml", REPO)
    assert cfg["experiment"] == "small" and cfg["finetune"]["learning_rates"] == [0.001]
    assert cfg["models"]["tiny"]["budgets"]  # the default's models, merged under it
    assert user_config(REPO / "configs" / "micro.yaml", REPO) == MICRO  # models given: complete on its own


def test_stable_checkpoints_and_compared_models_make_pairs():
    """A model with stable_checkpoints gets its companion <name>-stable (the stable run at each
    budget's tokens), judged against it for annealing; compare adds a named pair."""
    tiny = MICRO["models"]["tiny"]
    cfg = merge(MICRO, {"models": {"tiny": {"branching": True, "stable_checkpoints": True},
                                   "sam": {**tiny, "optimizer": {**tiny["optimizer"], "sam_rho": 0.05},
                                           "compare": {"with": "tiny", "factor": "sam"}}}})
    study = load(cfg)
    assert study.config["models"]["tiny-stable"] == {"source": "stable", "of": "tiny", "budgets": tiny["budgets"],
                                                     "seeds": tiny["seeds"]}
    assert ("tiny-stable", "tok8192-s1") in study.checkpoints and study.ours("tiny-stable")
    assert study.eval_max_length("tiny-stable") == MICRO["corpus"]["seq_len"]
    assert study.pairs == [{"factor": "sam", "treatment": "sam", "control": "tiny"},
                           {"factor": "annealing", "treatment": "tiny", "control": "tiny-stable"}]
    # a pair must be comparable: SAM on one side only, the same budgets and seeds
    for change, message in (
        ({"sam": {"optimizer": {"sam_rho": 0.0}}}, "factor sam needs optimizer.sam_rho > 0 here and 0 in tiny"),
        ({"sam": {"budgets": [8192]}}, "models.sam.compare: budgets and seeds must equal tiny's"),
        ({"tiny-stable": tiny}, "the companion model tiny-stable would replace a model of that name"),
        ({"sam": {"compare": {"match": {"tok1-s0": "tok8192-s0"}}}}, "models.sam.compare.match: 'tok1-s0' is not a checkpoint of sam"),
        ({"sam": {"compare": {"match": {"tok8192-s0": "x"}}}}, "models.sam.compare.match.tok8192-s0: 'x' is not a checkpoint of tiny"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(merge(cfg, {"models": change}))


# A bad value of each kind, and the one-line message that names its key and what is allowed
BAD = [
    ({"models": {"tiny": {"colour": "red"}}}, "models.tiny: unknown key(s) ['colour']"),
    ({"finetune": {"learning_rates": [-1e-3]}}, "finetune.learning_rates[0]: -0.001 is out of range"),
    ({"perturb": {"gaussian": {"gammas": [-0.1]}}}, "perturb.gaussian.gammas[0]: -0.1 is out of range"),
    ({"perturb": {"splits": ["test"]}}, "perturb.splits[0]: 'test' is not allowed; allowed: ['pretrain', 'val', 'id', 'ood']"),
    ({"models": {"tiny": {"budgets": []}}}, "models.tiny.budgets: must have at least 1"),
    ({"models": {"tiny": {"batch_size": "many"}}}, "models.tiny.batch_size: 'many' has the wrong type"),
    ({"models": {"tiny": {"source": "hubb"}}}, "models.tiny.source: 'hubb' is not allowed; allowed: ['pretrain', 'local', 'hub', 'results']"),
    ({"evaluate": {"id": ["arc easy!"]}}, "evaluate.id[0]: 'arc easy!' is not allowed; it must match"),
    ({"finetune": {"tasks": ["hh_rlfh"]}}, "finetune.tasks[0]: unknown task 'hh_rlfh'; allowed: ["),
    ({"models": {"tiny": {"source": "hub"}}}, "models.tiny: unknown key(s) ['architecture', 'batch_size', 'budgets', 'optimizer', 'seeds']"),
    ({"models": {"tiny": {"budgets": [100]}}}, "models.tiny.budgets: [100] is less than one step"),
    ({"unknown_section": 1}, "<top level>: unknown key(s) ['unknown_section']"),
    ({"models": {"tiny": {"stable_checkpoints": True}}}, "models.tiny.stable_checkpoints: the stable run's checkpoints need branching: true"),
    ({"models": {"tiny": {"compare": {"with": "big", "factor": "sam"}}}}, "models.tiny.compare.with: 'big' is not another model of the study; models: []"),
    ({"models": {"tiny": {"compare": {"with": "tiny", "factor": "ema"}}}}, "models.tiny.compare.factor: 'ema' is not allowed; allowed: ['sam', 'annealing']"),
    ({"analysis": {"stated_changes": [{"model": "big", "path": "data/springer-2025/stated.csv"}]}},
     "analysis.stated_changes[0].model: 'big' is not a model of this study; allowed: ['tiny']"),
    ({"analysis": {"stated_changes": [{"model": "tiny", "path": "stated.csv"}]}},
     "analysis.stated_changes[0].path: 'stated.csv' matches no file"),
    ({"analysis": {"stated_changes": [{"model": "tiny", "path": "data/amuro-char/all_perf_table.csv"}]}},
     "analysis.stated_changes[0].path: data/amuro-char/all_perf_table.csv has no column(s) ['source', 'from_tokens'"),
    ({"models": {"paper": {"source": "results", "beside": "nobody", "tables": [{
        "path": "data/amuro-char/all_perf_table.csv", "id_column": "model_id", "patterns": {"base": "x"},
        "eval_task_column": "eval dataset", "value_column": "Performance"}]}}},
     "models.paper.beside: 'nobody' is not a model of this study that runs; allowed: ['tiny']"),
]



@pytest.mark.parametrize("change,message", BAD)
def test_bad_config_is_refused_naming_the_key_and_what_is_allowed(change, message):
    with pytest.raises(ConfigError) as e:
        load(merge(MICRO, change))
    assert message in str(e.value)
