"""A study: the config validated and completed once, with everything derived from it that the
workflow's rules and `overtrain plan` need (checkpoints, fine-tuning tasks' datasets, evaluation
splits, variants, replicates, the command that runs it). Built by the Snakefile at parse time and
by `overtrain plan`; knows nothing of Snakemake (the caller passes its schema validator).

Loading fills the config in place, as Snakemake's own `validate` fills schema defaults: hub
revision selectors become the pinned list of revisions, and deprecated keys their new names.
"""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable

import yaml

from overtrain import checks
from overtrain import config as grid
from overtrain.evaluation.tasks import SYNTHETIC_TASKS
from overtrain.ids import STABLE_SUFFIX
from overtrain.sources import checkpoints as hub
from overtrain.sources import data as datasets

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# Renamed keys: section → {old name: new name}; the old name still works
RENAMED = {"connectivity": {"alphas": "points"}}


def user_config(configfile: str | Path, basedir: str | Path) -> dict:
    """The config a run of `--configfile <file>` sees: a file that defines `models` is a complete
    study, any other overrides keys of the default config.yaml (the Snakefile's rule)."""
    user = yaml.safe_load(Path(configfile).read_text()) or {}
    if "models" in user:
        return user

    def merge(base: dict, change: dict) -> dict:
        out = copy.deepcopy(base)
        for k, v in change.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(yaml.safe_load(Path(basedir, "config.yaml").read_text()), user)


def _rename(config: dict) -> None:
    for section, names in RENAMED.items():
        part = config.get(section)
        for old, new in names.items():
            if isinstance(part, dict) and old in part:
                if new in part:
                    raise grid.ConfigError(f"{section}.{old}: renamed {section}.{new}; give only {section}.{new}")
                part[new] = part.pop(old)


# the columns of a paper's stated changes (analysis.stated_changes; overtrain.analysis.published)
STATED_COLUMNS = ["source", "from_tokens", "to_tokens", "ft_task", "eval_task", "metric", "change"]

@dataclass(eq=False)  # hashed by identity: its per-task derivations are cached
class Study:
    """The validated config and what the workflow derives from it."""

    config: dict
    basedir: Path
    specs: dict = field(default_factory=dict)  # fine-tuning task → its dataset spec
    hub_tokens: dict = field(default_factory=dict)  # (model, revision) → pretraining tokens
    hub_commits: dict = field(default_factory=dict)  # (model, revision) → the pinned commit

    @classmethod
    def load(cls, config: dict, basedir: str | Path, validate: Callable[[dict], None]) -> Study:
        """Validate and complete `config` in place (`validate`: the schema validator that fills
        defaults, e.g. snakemake.utils.validate against SCHEMA); check what the schema cannot;
        resolve hub revisions through results/<experiment>/checkpoints.lock. Every problem is a
        ConfigError naming the key."""
        _rename(config)
        try:
            validate(config)
        except Exception:  # the validator's own error dumps the whole sub-schema: name the key instead
            raise grid.ConfigError(checks.explain_schema_error(config, SCHEMA)) from None
        ft = config["finetune"]
        specs = {t: datasets.task_spec(t, ft["datasets"]) for t in ft["tasks"]
                 if t in datasets.TASKS or t in ft["datasets"]}
        checks.check(config, basedir, known_ft_tasks=set(datasets.TASKS), specs=specs)
        study = cls(config, Path(basedir), specs)
        study._resolve_hub()
        study._add_stable_models()
        study._resolve_results()
        study._check_matches()
        study._check_stated_changes()
        return study

    def _add_stable_models(self) -> None:
        """A controlled model with stable_checkpoints gets a companion model, <name>-stable: the
        stable run's states at its budgets' own tokens (no decay), compared with it at equal
        tokens (factor annealing)."""
        models = self.config["models"]
        for name, m in list(models.items()):
            if m["source"] == "pretrain" and m["stable_checkpoints"]:
                models[f"{name}{STABLE_SUFFIX}"] = {"source": "stable", "of": name, "budgets": m["budgets"],
                                                    "seeds": m["seeds"]}

    def _resolve_results(self) -> None:
        """Results models' files as absolute paths: relative to where Snakemake runs, else to the
        workflow (the tables shipped in data/); a missing one is an error naming its key."""
        for name, m in self.config["models"].items():
            if m["source"] != "results":
                continue
            if not m["tables"] and not m["lm_eval"]:
                raise grid.ConfigError(f"models.{name}: a results model needs tables or lm_eval files")
            ours = [n for n, o in self.config["models"].items() if o["source"] != "results"]
            if m.get("beside") is not None and m["beside"] not in ours:
                raise grid.ConfigError(f"models.{name}.beside: {m['beside']!r} is not a model of this study that "
                                       f"runs; allowed: {ours}")
            for key, entries in (("tables", m["tables"]), ("lm_eval", m["lm_eval"])):
                for i, entry in enumerate(entries):
                    entry["path"] = self._shipped(entry["path"], f"models.{name}.{key}[{i}].path")

    def _shipped(self, path: str, key: str) -> str:
        """A data file (or glob) of the config, as an absolute path: relative to where Snakemake
        runs, else to the workflow (files shipped in data/); none is an error naming the key."""
        import glob

        for root in (Path.cwd(), self.basedir):
            if glob.glob(str(Path(root, path))):
                return str(Path(root, path).resolve())
        raise grid.ConfigError(f"{key}: {path!r} matches no file (here or in {self.basedir})")

    def _check_matches(self) -> None:
        """compare.match names checkpoints of the two models (hub revisions once resolved)."""
        ckpts = {}
        for model, ckpt in self.checkpoints:
            ckpts.setdefault(model, []).append(ckpt)
        for name, m in self.config["models"].items():
            match = (m.get("compare") or {}).get("match") or {}
            other = m.get("compare", {}).get("with")
            for mine, theirs in match.items():
                if mine not in ckpts[name]:
                    raise grid.ConfigError(f"models.{name}.compare.match: {mine!r} is not a checkpoint of {name}; "
                                           f"allowed: {ckpts[name]}")
                if theirs not in ckpts[other]:
                    raise grid.ConfigError(f"models.{name}.compare.match.{mine}: {theirs!r} is not a checkpoint of "
                                           f"{other}; allowed: {ckpts[other]}")

    def _check_stated_changes(self) -> None:
        """analysis.stated_changes: a model of the study and a CSV with the columns the join reads
        (a path relative to where Snakemake runs, else to the workflow)."""
        for i, entry in enumerate(self.config["analysis"]["stated_changes"]):
            key = f"analysis.stated_changes[{i}]"
            if entry["model"] not in self.config["models"]:
                raise grid.ConfigError(f"{key}.model: {entry['model']!r} is not a model of this study; allowed: "
                                       f"{list(self.config['models'])}")
            found = self._shipped(entry["path"], f"{key}.path")
            with open(found, newline="") as f:
                header = next(csv.reader(f), [])
            missing = [c for c in STATED_COLUMNS if c not in header]
            if missing:
                raise grid.ConfigError(f"{key}.path: {entry['path']} has no column(s) {missing}; it needs {STATED_COLUMNS}")
            entry["path"] = found

    @cached_property
    def published_beside(self) -> dict[str, str]:
        """Results models that stand beside one of ours (models.<name>.beside): name → our model."""
        return {name: m["beside"] for name, m in self.config["models"].items()
                if m["source"] == "results" and m.get("beside")}

    @cached_property
    def pairs(self) -> list[dict]:
        """Models judged against each other at equal tokens: {factor, treatment, control}."""
        out = []
        for name, m in self.config["models"].items():
            if m.get("compare"):
                out.append({"factor": m["compare"]["factor"], "treatment": name, "control": m["compare"]["with"],
                            **({"match": m["compare"]["match"]} if m["compare"].get("match") else {})})
            if m["source"] == "stable":
                out.append({"factor": "annealing", "treatment": m["of"], "control": name})
        return out

    def _resolve_hub(self) -> None:
        """Hub models: revisions (a selector resolved once) and their commits, pinned in the lock
        on first resolution; every checkpoint's tokens, so a bad name fails before any job."""
        models = {n: m for n, m in self.config["models"].items() if m["source"] == "hub"}
        if not models:
            return
        try:
            resolved = hub.resolve_hub(models, self.lock_path, refresh=self.config["revisions_lock"] == "refresh")
        except (ValueError, hub.HubError) as e:
            raise grid.ConfigError(f"models.{next(iter(models))}.revisions: {e}") from None
        for name, entry in resolved.items():
            model = self.config["models"][name]
            model["revisions"] = entry["revisions"]
            try:
                for rev in model["revisions"]:
                    self.hub_tokens[(name, rev)] = hub.checkpoint_tokens(rev, model)
                    self.hub_commits[(name, rev)] = entry["commits"].get(rev)
            except ValueError as e:
                raise grid.ConfigError(f"models.{name}.revisions: {e}") from None

    # --- where ----------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """results/<experiment>: every output of the study (a contract)."""
        return f"results/{self.config['experiment']}"

    @property
    def lock_path(self) -> Path:
        return Path(self.root, "checkpoints.lock")

    @property
    def command(self) -> str:
        """The command that runs this study: the default, or the preset of the same name (it must
        not depend on how a run was invoked)."""
        name = self.config["experiment"]
        if name == "default":
            return "snakemake --cores all"
        if Path(self.basedir, "configs", f"{name}.yaml").exists():
            return f"snakemake --cores all --configfile configs/{name}.yaml"
        return "snakemake --cores all --configfile <the config of this experiment>"

    # --- what -----------------------------------------------------------------------------------
    @cached_property
    def checkpoints(self) -> list[tuple[str, str]]:
        return grid.checkpoints(self.config)

    @cached_property
    def first_checkpoint(self) -> dict[str, str]:
        """Any checkpoint of each model (its tokenizer renders the fine-tuning data)."""
        out: dict[str, str] = {}
        for model, ckpt in self.checkpoints:
            out.setdefault(model, ckpt)
        return out

    @cached_property
    def splits(self) -> dict[str, str]:
        """The base checkpoint's evaluation tasks → split (its perturbations score a part)."""
        return grid.eval_splits(self.config, self.specs)

    @cached_property
    def perturbed_splits(self) -> dict[str, str]:
        return grid.perturbed_splits(self.config, self.splits)

    @cached_property
    def checkpoint_variants(self) -> list[str]:
        """The base and its in-memory perturbations: one evaluation job per checkpoint."""
        return ["base"] + grid.perturbations(self.config, self.splits)

    @cached_property
    def checkpoint_evaluations(self) -> float:
        """A checkpoint's evaluation job in evaluations of every task: the base, and each
        perturbed variant on its share of the tasks (perturb.splits)."""
        share = len(self.perturbed_splits) / max(1, len(self.splits))
        return 1 + (len(self.checkpoint_variants) - 1) * share

    @lru_cache(maxsize=None)  # noqa: B019 (a few Study objects per process)
    def finetuned_splits(self, task: str) -> dict[str, str]:
        """A fine-tune's evaluation tasks: its own val/test sets, the others' tests as ood."""
        return grid.eval_splits(self.config, self.specs, task)

    @lru_cache(maxsize=None)  # noqa: B019
    def connectivity_splits(self, task: str) -> dict[str, str]:
        """The tasks evaluated along a path (and for soups), with the fine-tune's own val task when
        soups are ordered on it (analysis.select.task: own)."""
        splits = self.finetuned_splits(task)
        tasks = list(self.config["connectivity"]["tasks"])
        if (self.config["analysis"]["select"] or {}).get("task") == "own":
            tasks.append(grid.own_val_task(task))
        return {t: splits[t] for t in dict.fromkeys(tasks) if t in splits}

    @cached_property
    def grid_runs(self) -> list[tuple[str, str]]:
        return grid.grid_runs(self.config)

    @cached_property
    def multimodal_runs(self) -> list[tuple[str, str]]:
        return grid.multimodal_runs(self.config)

    @cached_property
    def connectivity_groups(self) -> list[tuple[str, str, list[int]]]:
        return grid.connectivity_groups(self.config)

    @cached_property
    def judged_variants(self) -> list[str]:
        return grid.judged_variants(self.config)

    @cached_property
    def text_datasets(self) -> list[str]:
        """Fine-tuning tasks whose data is a prepared dataset (not the corpus, not images)."""
        return [t for t in self.config["finetune"]["tasks"] if t != "synth_ft" and not grid.is_multimodal(t)]

    @cached_property
    def corpus_eval_files(self) -> list[str]:
        """The corpus files (keys of rules/corpus.smk's outputs) evaluations read: those of our
        synthetic lm-eval tasks, when any of them is evaluated."""
        if not any(t.startswith("synth_") for t in self.splits):
            return []
        return sorted({data_file for data_file, *_ in SYNTHETIC_TASKS.values()})

    @cached_property
    def replicates(self) -> int:
        """Replicates of the study: pretraining seeds of the controlled study, else fine-tuning
        seeds."""
        seeds = [len(m["seeds"]) for m in self.config["models"].values() if m["source"] == "pretrain"]
        return max(seeds or [len(self.config["finetune"]["seeds"])])

    def source_of(self, model: str) -> str:
        return self.config["models"][model]["source"]

    def ours(self, model: str) -> bool:
        """Whether a model is one of the controlled study's (pretrained here, decayed or stable)."""
        return self.source_of(model) in ("pretrain", "stable")

    def eval_max_length(self, model: str) -> int | None:
        """Our tiny models know seq_len tokens; other models use their own context length."""
        return self.config["corpus"]["seq_len"] if self.ours(model) else None

    def train_max_length(self, model: str) -> int:
        """Tokens of a fine-tuning sequence (a LLaVA one with its image positions): the tiny
        models' context, else finetune.max_length."""
        return self.config["corpus"]["seq_len"] if self.ours(model) else self.config["finetune"]["max_length"]

    def trust_remote_code(self, model: str) -> bool:
        """Whether a model's own code may run (hub and local models; never ours)."""
        return self.config["models"][model].get("trust_remote_code", False)
