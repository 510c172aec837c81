"""Counts of the bad inputs the fuzz tests tried and how each was refused, printed at the
end of the run (tests/gateway/conftest.py), so `make fuzz` says how much it covered."""

from __future__ import annotations

from collections import Counter

#: "tried:<kind>" per input, and "<kind>:<outcome>" per answer (an error name or "accepted").
TALLY: Counter[str] = Counter()


def lines() -> list[str]:
    """One line per kind of input: how many were tried and how they ended, most common first."""
    kinds = sorted(key.removeprefix("tried:") for key in TALLY if key.startswith("tried:"))
    out = []
    for kind in kinds:
        outcomes = Counter(
            {
                key.split(":", 1)[1]: count
                for key, count in TALLY.items()
                if key.startswith(f"{kind}:")
            }
        )
        shown = ", ".join(f"{name} {count}" for name, count in outcomes.most_common())
        out.append(f"{kind}: {TALLY[f'tried:{kind}']} tried; {shown}")
    return out
