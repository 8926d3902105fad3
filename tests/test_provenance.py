"""Code versions are derived, never typed: a step's hash covers every module its script reaches."""

import re
from pathlib import Path

import pytest
from conftest import REPO, snakemake

from overtrain import provenance


def _package(root: Path) -> tuple[Path, Path]:
    """A package `overtrain` with a module reached only through a function-local import, a
    relative import, a subpackage, an unrelated module, and a script with a sibling helper."""
    pkg = root / "overtrain"
    (pkg / "wing").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from overtrain import b\n",
        "b.py": "def f():\n    from overtrain.wing import c\n    return c\n",
        "wing/__init__.py": "",
        "wing/c.py": "from . import d\n",
        "wing/d.py": "X = 1\n",
        "unrelated.py": "import overtrain.a\n",
        "jobserver.py": "Y = 2\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    scripts = root / "scripts"
    scripts.mkdir()
    (scripts / "_helper.py").write_text("def start():\n    from overtrain import jobserver\n")
    (scripts / "step.py").write_text("from _helper import start\nimport json\nfrom overtrain.a import b\n")
    return pkg, scripts / "step.py"


def test_the_closure_follows_function_local_relative_and_helper_imports(tmp_path):
    pkg, script = _package(tmp_path)
    closure = provenance.import_closure(script, root=pkg)
    assert closure == ["overtrain", "overtrain.a", "overtrain.b", "overtrain.wing", "overtrain.wing.c",
                       "overtrain.wing.d"]  # not `unrelated`, nor the exempt job server
    assert provenance.import_closure("overtrain.wing.c", root=pkg) == ["overtrain", "overtrain.wing",
                                                                        "overtrain.wing.c", "overtrain.wing.d"]


def test_editing_a_reached_module_changes_the_digest_and_an_unreached_one_does_not(tmp_path):
    pkg, script = _package(tmp_path)
    before = provenance.code_digest(script, root=pkg)
    provenance._direct_imports.cache_clear()
    (pkg / "unrelated.py").write_text("import overtrain.a\nZ = 3\n")
    (pkg / "jobserver.py").write_text("Y = 3\n")
    assert provenance.code_digest(script, root=pkg) == before
    (pkg / "wing" / "d.py").write_text("X = 2\n")  # two imports away, one of them inside a function
    assert provenance.code_digest(script, root=pkg) != before


def test_every_rule_with_a_script_hashes_that_script_and_nothing_is_typed():
    scripts = provenance.rule_scripts()
    assert len(scripts) >= 20
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            name = re.search(r"^\s*rule (\w+):", block)
            if name and name[1] in scripts:
                script = re.search(r'script:\s*\n\s*"([^"]+)"', block)[1]
                assert f'code=code_version("{script}")' in block, f"rule {name[1]}: its code param must hash {script}"
    assert all(provenance.import_closure(s)[0] == "overtrain" for s in scripts.values())
    assert "def code_version(script)" in (REPO / "rules" / "common.smk").read_text()


def test_the_job_server_preloads_every_module_a_job_script_reaches():
    from overtrain import jobserver

    preloaded = set(jobserver.preload())
    for script in (REPO / "scripts").glob("*.py"):
        assert set(provenance.import_closure(script)) <= preloaded, script.name
    assert "overtrain.jobserver" not in preloaded


def test_resume_states_are_keyed_by_the_training_modules_closure():
    from overtrain.training import finetune

    closure = provenance.import_closure(finetune.__file__)
    assert {"overtrain.training.finetune", "overtrain.training.loop", "overtrain.training.sft", "overtrain.models"} <= set(closure)


# The modules whose edits were not rerun before code versions were derived (six of them), the
# ground every model job stands on, a figure-only module and one that is exempt on purpose.
EDITED = ["overtrain/analysis/intervals.py", "overtrain/analysis/tables.py", "overtrain/config.py", "overtrain/evaluation/curves.py",
          "overtrain/integrity.py", "overtrain/perturb.py", "overtrain/models.py", "overtrain/analysis/plots.py",
          "overtrain/jobserver.py"]


@pytest.mark.e2e
def test_editing_a_module_of_a_finished_study_reruns_exactly_the_rules_that_import_it(micro_run, tmp_path):
    """A finished micro study, and a copy of the workflow (mtimes kept: Snakemake triggers a
    script rule on its script's mtime): each edit of one module makes Snakemake plan exactly the
    rules whose scripts reach it (status 'params changed'), no other."""
    import shutil

    work, configfile = micro_run
    copy = tmp_path / "workflow"
    copy.mkdir()
    for name in ("Snakefile", "config.yaml", "configs", "rules", "scripts", "overtrain", "schemas", "report", "envs",
                 "profiles"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, copy / name)  # keeps mtimes
    scripts = provenance.rule_scripts()

    def changed() -> dict[str, set[str]]:
        r = snakemake(work, configfile, "-n", "--summary", workflow=copy)
        assert r.returncode == 0, r.stderr[-2000:]
        rows = [line.split("\t") for line in r.stdout.splitlines() if line.count("\t") >= 5]
        status: dict[str, set[str]] = {}
        for row in rows[1:]:
            status.setdefault(row[4], set()).add(row[2])
        return status

    untouched = changed()
    assert set(untouched) == {"ok"}, untouched
    in_study = untouched["ok"]
    for module in EDITED:
        path = copy / module
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        try:
            status = changed()
        finally:
            path.write_text(original)
        name = module.removesuffix(".py").replace("/", ".")
        expected = {rule for rule in in_study if name in provenance.import_closure(
            copy / scripts[rule].relative_to(REPO), root=copy / "overtrain")}
        assert expected or name in provenance.EXEMPT, module
        assert status.get("params changed", set()) == expected, module
        assert set(status) <= {"ok", "params changed"}, status
    assert "overtrain.jobserver" in provenance.EXEMPT



WINGS = {"sources": 1, "training": 2, "evaluation": 3, "analysis": 4}
TOP = {"overtrain.study", "overtrain.plan"}  # the loaded study and the command line stand on everything


def _floor(module: str) -> int:
    if module in TOP:
        return 9
    parts = module.split(".")
    return WINGS[parts[1]] if len(parts) > 2 else 0


def test_no_import_runs_back_up_and_the_analysis_stays_light():
    """Each wing imports only the wings below it and the ground; the ground imports no wing; the
    analysis wing imports neither torch, transformers nor lm-eval (figure and table jobs start in
    under a second), anywhere in its code."""
    import ast

    for module in provenance.package_modules():
        path = provenance.module_file(module)
        for imported in provenance._direct_imports(path.resolve(), provenance.ROOT):
            target = next((p for p in (imported, imported.rsplit(".", 1)[0]) if provenance.module_file(p)), None)
            if target and target != "overtrain":
                assert _floor(target) <= _floor(module), f"{module} imports {target}, a floor above it"
        if _floor(module) == WINGS["analysis"]:
            heavy = [n.names[0].name if isinstance(n, ast.Import) else n.module for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, (ast.Import, ast.ImportFrom))]
            assert not [h for h in heavy if h and h.split(".")[0] in ("torch", "transformers", "lm_eval")], module


def test_no_module_is_over_400_lines():
    for path in [*provenance.ROOT.rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]:
        assert len(path.read_text().splitlines()) <= 400, path


def test_every_module_has_tests_that_import_it():
    """Each module of the package is imported by some test file (the wings included)."""
    import ast

    seen = set()
    for path in (REPO / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("overtrain"):
                seen |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                seen |= {a.name for a in node.names}
    untested = [m for m in provenance.package_modules() if m not in seen and not m.endswith("__init__")
                and m not in ("overtrain", "overtrain.sources", "overtrain.training", "overtrain.evaluation",
                              "overtrain.analysis")]
    assert not untested, untested
