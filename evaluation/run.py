"""`soma eval`: build or load the seeded cases of a protocol, run every method on them, write the table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .cases import build_cases, load_cases, materialise, save_cases
from .harness import Summary, markdown_table, methods, run_method, summarise, to_records

HELD_OUT_TILES = ("T11SMT",)


def evaluate(data_root: str | Path, protocol: str, cleaned: bool, method_names: list[str],
             out_dir: str | Path, checkpoint: str | Path | None = None, seed: int = 0, limit: int | None = None,
             echo: Callable[[str], None] = print) -> list[Summary]:
    """Run `method_names` on the protocol's held-out cases; write cases, per-case results and a table."""
    out = Path(out_dir)
    kind = "cleaned" if cleaned else "raw"
    cases_file = out / f"cases_{protocol}_{kind}.json"
    if cases_file.is_file():
        cases = load_cases(cases_file)
    else:
        cases = build_cases(data_root, protocol, HELD_OUT_TILES, cleaned, seed)
        save_cases(cases_file, cases)
    cases = cases[:limit] if limit else cases
    echo(f"{len(cases)} {kind} cases of protocol {protocol!r} ({cases_file})")
    data = materialise(cases, data_root)
    summaries, records = [], []
    for name, method in methods(method_names, checkpoint).items():
        results = run_method(name, method, data)
        summaries.append(summarise(results))
        records += to_records(results)
        s = summaries[-1]
        echo(f"{name:<20} CMR@1/3/5 {s.cmr[1]:.0%}/{s.cmr[3]:.0%}/{s.cmr[5]:.0%}  median {s.median_rmse:.2f} px  "
             f"failures {s.failures}  {s.seconds_per_case:.2f} s/case")
    (out / f"results_{protocol}_{kind}.json").write_text(
        json.dumps({"summaries": [asdict(s) for s in summaries], "cases": records}, indent=1, default=str))
    (out / f"results_{protocol}_{kind}.md").write_text(markdown_table(summaries))
    return summaries
