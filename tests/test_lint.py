"""The workflow stays `snakemake --lint` clean and snakefmt-formatted."""

import subprocess
import sys

from conftest import REPO


def test_snakemake_lint_clean():
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Congratulations" in out, out


def test_snakefmt_clean():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    r = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
