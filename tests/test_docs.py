"""What the README and the report say of the outputs' contracts is what the code does."""

import re

from conftest import REPO

from overtrain import ids
from overtrain.analysis.tables import METRIC_COLUMNS, SPLITS, VARIANTS


def docs_text() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def test_the_documented_metrics_columns_are_the_code_s():
    lists = re.findall(r"^`(model, ckpt, [a-z0-9_, ]+)`", docs_text(), re.M)
    assert lists, "the docs list the columns of tables/metrics.csv"
    for listed in lists:
        assert listed.split(", ") == METRIC_COLUMNS


def test_the_documented_run_id_pattern_is_the_code_s():
    pattern = re.search(r"run = (<method>-lr<lr>\[-l2<λ>\]-s<seed>)", docs_text())
    assert pattern, "the docs give the run id pattern"
    # each part the pattern names is a group of the code's, in that order, and real ids parse
    assert re.findall(r"<(\w+)>", pattern[1].replace("λ", "l2")) == ["method", "lr", "l2", "seed"]
    assert re.findall(r"\?P<(\w+)>", ids.RUN_PATTERN) == ["method", "lr", "l2", "seed"]
    for run in ("full-lr0.001-s0", "lora-lr3e-05-l210-s2", "llava-lr0.0002-s1"):
        assert re.fullmatch(ids.RUN_PATTERN, run) and ids.run_id(**_args(ids.parse_run_id(run))) == run


def _args(run: dict) -> dict:
    return {"lr": run["lr"], "seed": run["seed"], "method": run["method"], "l2": run["l2"]}


def test_the_report_names_every_variant_and_split():
    caption = (REPO / "report" / "metrics.rst").read_text()
    for word in VARIANTS + SPLITS:
        assert word in caption, word
    readme = docs_text()
    for word in VARIANTS + SPLITS:
        assert f"`{word}`" in readme, word


def test_no_code_points_at_a_file_outside_the_repository():
    outside = re.compile(r"DESIGN\.md|REVIEW\.md|shared/research|\.\./shared")
    for path in [*REPO.glob("overtrain/**/*.py"), *REPO.glob("scripts/*.py"), *REPO.glob("rules/*.smk"),
                 *REPO.glob("*.yaml"), *REPO.glob("configs/*.yaml"), *REPO.glob("report/*.rst")]:
        assert not outside.search(path.read_text()), path


def test_the_outputs_page_describes_every_figure_and_table():
    """The figure and table names come from the code (overtrain.analysis.catalog); each has a line
    in docs/outputs.md, the page the README links for them."""
    from overtrain.analysis import catalog

    readme = (REPO / "docs" / "outputs.md").read_text()
    for name in catalog.figure_names() + ["theory"]:
        assert f"- `{name}` —" in readme, name
    for name in catalog.table_names() + ["theory", "training_curves"]:
        assert f"| `{name}.csv` |" in readme, name


def test_the_readme_fits_a_screen_and_every_link_of_the_docs_resolves():
    """The README keeps what a newcomer needs first (≤ 12 KB) and links the rest; no link of it
    or of docs/ points at a missing file, and its two commands are the ones CI runs."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024, len(readme.encode())
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"https?:", target):
                assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links {target}"
    for linked in re.findall(r"\]\((docs/[\w./-]+\.md)", readme):
        assert (REPO / linked).is_file()
    ci = (REPO / ".ci" / "run").read_text()
    test_command = re.search(r"## Run the tests\n\n```bash\n(.+)\n```", readme)[1]
    assert test_command in ci
    assert re.search(r"## Run the main job\n\n.*\n\n```bash\n.*snakemake --cores all\n```", readme)
