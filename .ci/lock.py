"""Write requirements.lock: the exact, hashed package set of a tested environment.

    .venv/bin/pip install uv==0.13.9  # once
    .venv/bin/python .ci/lock.py       # from the environment the tests passed in

The set is `pip freeze` of that environment (this project excluded), given hashes by
`uv pip compile` (torch's CPU build comes from the local wheel directory, PIP_FIND_LINKS). pip's
hash-checking mode also needs the plain name of a package pinned where only `name[extra]`
appears, so such lines are duplicated without the extra.
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = """\
# The exact, hashed set overtrain is tested with; CI installs it. Python 3.11 on x86-64 Linux with
# CPU torch (the local wheel torch-2.13.0+cpu, found through PIP_FIND_LINKS). Install exactly it:
#   pip install --require-hashes -r requirements.lock && pip install --no-deps -e .
# (or, faster: uv pip install -r requirements.lock --find-links "$PIP_FIND_LINKS"). Written by
# .ci/lock.py from the environment the tests passed in; do not edit by hand.
"""


def main() -> None:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    keep = [line for line in frozen.splitlines() if line and not line.lower().startswith(("overtrain", "uv=="))]
    uv = Path(sys.executable).with_name("uv")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "frozen.txt"), Path(tmp, "lock.txt")
        src.write_text("\n".join(keep) + "\n")
        subprocess.run([str(uv), "pip", "compile", str(src), "--python-version", "3.11", "--python-platform",
                        "x86_64-unknown-linux-gnu", "--generate-hashes", "--no-strip-extras", "--no-header",
                        "--find-links", os.environ.get("PIP_FIND_LINKS", "/opt/wheels"), "-o", str(out)], check=True)
        lines = out.read_text().replace(str(src), "frozen set").splitlines()
    result, i = [], 0
    while i < len(lines):
        j = i + 1
        while j < len(lines) and lines[j].startswith("    "):
            j += 1
        block = lines[i:j]
        result += block
        if m := re.match(r"^([A-Za-z0-9_.-]+)\[[^\]]+\](==\S+) \\$", block[0]):
            hashes = [h for h in block[1:] if h.strip().startswith("--hash")]
            result += [f"{m[1]}{m[2]} \\"] + [h.rstrip(" \\") + (" \\" if k < len(hashes) - 1 else "")
                                              for k, h in enumerate(hashes)]
        i = j
    (REPO / "requirements.lock").write_text(HEADER + "\n".join(result) + "\n")
    print(f"requirements.lock: {sum(1 for line in result if re.match(r'^[A-Za-z0-9]', line))} pinned lines")


if __name__ == "__main__":
    main()
