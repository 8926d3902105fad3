"""How numbers read in tables, findings and figure axes (no pandas, no matplotlib: the findings
page formats tokens without drawing anything)."""

from __future__ import annotations

UNITS = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]


def format_tokens(n: float) -> str:
    """Readable token counts: 124928 → '125K', 999424 → '1M', 2.3e12 → '2.3T'.

    Two significant digits when that is within 1% of the value, else three.
    """
    if n <= 0:
        return "0"
    for digits in (2, 3):
        rounded = float(f"{n:.{digits}g}")
        if abs(rounded - n) <= 0.01 * n:
            break
    for scale, unit in UNITS:
        if rounded >= scale:
            return f"{rounded / scale:g}{unit}"
    return f"{rounded:g}"
