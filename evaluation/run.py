"""`soma eval`: build or load the seeded cases of a protocol, run every method on them, write the table.

Per-method results are kept beside the table, keyed by the cases (and, for SOMA, the checkpoint): a rerun
with a new checkpoint recomputes only SOMA.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .cases import build_cases, load_cases, materialise, save_cases
from .harness import SOMA_METHODS, CaseResult, Summary, markdown_table, methods, run_method, summarise, to_records

HELD_OUT_TILES = ("T11SMT",)


def _method_key(cases_text: str, limit: int | None, name: str, checkpoint: str | Path | None) -> str:
    """What a method's cached results depend on: the cases, the limit and, for SOMA, the checkpoint file."""
    from model.checkpoint import file_sha256
    from model.registrar import BUNDLED_CHECKPOINT

    parts = [cases_text, str(limit), name]
    if name in SOMA_METHODS:
        path = Path(checkpoint) if checkpoint else BUNDLED_CHECKPOINT
        parts.append(file_sha256(path) if path.is_file() else "untrained")
        parts.append(json.dumps(SOMA_METHODS[name].to_dict(), sort_keys=True))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def evaluate(data_root: str | Path, protocol: str, cleaning: str, method_names: list[str],
             out_dir: str | Path, checkpoint: str | Path | None = None, seed: int = 0, limit: int | None = None,
             echo: Callable[[str], None] = print) -> list[Summary]:
    """Run `method_names` on the protocol's held-out cases (truth by `cleaning`, see `cases.CLEANINGS`); write
    cases, per-case results and a table."""
    out = Path(out_dir)
    cases_file = out / f"cases_{protocol}_{cleaning}.json"
    if cases_file.is_file():
        cases = load_cases(cases_file)
    else:
        cases = build_cases(data_root, protocol, HELD_OUT_TILES, cleaning, seed)
        save_cases(cases_file, cases)
    cases = cases[:limit] if limit else cases
    echo(f"{len(cases)} {cleaning}-cleaned cases of protocol {protocol!r} ({cases_file})")
    cases_text = cases_file.read_text()
    data = None
    summaries, records = [], []
    for name in method_names:
        cache = out / "per_method" / f"{protocol}_{cleaning}_{name}.json"
        key = _method_key(cases_text, limit, name, checkpoint)
        if cache.is_file() and json.loads(cache.read_text())["key"] == key:
            results = [CaseResult(**r) for r in json.loads(cache.read_text())["results"]]
            source = "cached"
        else:
            data = data if data is not None else materialise(cases, data_root)
            results = run_method(name, methods([name], checkpoint)[name], data)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"key": key, "results": to_records(results)}, default=str))
            source = "ran"
        summaries.append(summarise(results))
        records += to_records(results)
        s = summaries[-1]
        echo(f"{name:<20} CMR@1/3/5 {s.cmr[1]:.0%}/{s.cmr[3]:.0%}/{s.cmr[5]:.0%}  median {s.median_rmse:.2f} px  "
             f"failures {s.failures}  {s.seconds_per_case:.2f} s/case ({source})")
    (out / f"results_{protocol}_{cleaning}.json").write_text(
        json.dumps({"summaries": [asdict(s) for s in summaries], "cases": records}, indent=1, default=str))
    (out / f"results_{protocol}_{cleaning}.md").write_text(markdown_table(summaries))
    return summaries
