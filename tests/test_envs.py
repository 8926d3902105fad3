"""The conda environments (for `--sdm conda`) pin the same versions as pyproject.toml, and every
rule names one of them."""

import re
import tomllib

import pytest
import yaml
from conftest import REPO

CONDA_NAMES = {"matplotlib-base": "matplotlib"}  # conda-forge name → PyPI name


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict:
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [r for extra in project["optional-dependencies"].values() for r in extra] + project["dependencies"]
    return {norm(Requirement(r).name): Requirement(r) for r in reqs}


def lock_pins() -> dict[str, str]:
    """Exact versions of requirements.lock (the tested set)."""
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==([^\s\\]+)", line):
            pins[norm(m[1])] = m[2]
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep.get("pip", []):
                name, version = pip_dep.split("==")
                pins[norm(name)] = version
        else:
            name, _, version = dep.partition("=")
            pins[norm(CONDA_NAMES.get(name, name))] = version
    return pins


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_env_pins_agree_with_the_lock(env):
    pins, locked, project = env_pins(REPO / "envs" / env), lock_pins(), pyproject_requirements()
    assert pins.pop("python") == "3.11"
    pins.pop("pip", None)
    assert pins, env
    for name, version in pins.items():
        assert name in project, f"{env}: {name} is not a dependency in pyproject.toml"
        assert name in locked, f"{env}: {name} is not in requirements.lock"
        assert version == locked[name].split("+")[0], f"{env}: {name}=={version}, requirements.lock has {locked[name]}"


def test_the_lock_satisfies_pyproject_and_every_python_it_allows():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    locked = lock_pins()
    for name, req in pyproject_requirements().items():
        assert name in locked, f"{name} is not in requirements.lock"
        assert req.specifier.contains(Version(locked[name]), prereleases=True), f"{name}: {locked[name]} not {req}"
    allowed = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert all(v in allowed for v in ("3.11.7", "3.12.1", "3.13.0")) and "3.14.0" not in allowed
    assert locked["torch"] == "2.13.0+cpu"


def test_every_rule_has_an_existing_conda_env():
    rules = sorted((REPO / "rules").glob("*.smk"))
    found = 0
    for smk in rules:
        text = smk.read_text()
        n_rules = len(re.findall(r"^\s*rule \w+:", text, re.M))  # rules in an if/else are indented
        envs = re.findall(r'conda:\n\s+"\.\./(envs/[\w.-]+\.yaml)"', text)
        assert len(envs) == n_rules, f"{smk.name}: {n_rules} rules, {len(envs)} conda envs"
        for e in envs:
            assert (REPO / e).exists(), e
        found += n_rules
    from overtrain.provenance import rule_scripts

    assert found == len(rule_scripts()) + 1  # every rule that runs a script, and publish (a shell command)


def test_model_env_has_every_library_the_model_jobs_import():
    pins = env_pins(REPO / "envs" / "torch.yaml")
    for lib in ("torch", "transformers", "lm-eval", "datasets", "peft", "huggingface-hub", "safetensors", "pandas"):
        assert lib in pins, lib
