"""One seeded harness for every method: per-case flow RMSE, CMR@k, median, failures, seconds."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from model import Registrar
from model.config import RefineConfig

from .baselines import BASELINES, Method
from .cases import Materialised

CMR_THRESHOLDS_PX = (1, 3, 5)


@dataclass(frozen=True)
class CaseResult:
    method: str
    case_id: str
    rmse: float
    """Flow RMSE over the case's valid pixels, px; inf for a failure."""
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Summary:
    method: str
    cases: int
    cmr: dict[int, float]
    """Share of all cases (failures included) with RMSE below k px."""
    median_rmse: float
    failures: int
    seconds_per_case: float


def flow_rmse(flow: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """RMSE of the end-point error over `valid` pixels."""
    err = ((flow - truth) ** 2).sum(axis=0)[valid]
    return float(np.sqrt(err.mean())) if err.size else float("inf")


SOMA_METHODS = {"soma": RefineConfig(), "soma_network": RefineConfig(enabled=False),
                "soma_no_search": RefineConfig(search_radius_px=0),
                "soma_affine_start": RefineConfig(start="affine", search_radius_px=0),
                "refine_from_identity": RefineConfig(start="identity", search_radius_px=0),
                "refine_search_from_identity": RefineConfig(start="identity")}
"""The Registrar as harness methods: the default (network plus test-time refinement), the network alone, and
the ablations (no shift search; from the network's affine as it is; the refinement, with and without the
search, from identity instead of the network's estimate)."""


def soma_method(checkpoint: str | Path | None = None, refinement: RefineConfig = RefineConfig()) -> Method:
    """The SOMA Registrar as a harness method."""
    reg = Registrar.load(checkpoint, device="cpu", refinement=refinement)
    return lambda optical, sar: reg.register(optical, sar).flow


def run_method(name: str, method: Method, cases: list[Materialised],
               progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Each case through `method`; an exception or a non-finite flow is a failure with RMSE inf."""
    results = []
    for i, m in enumerate(cases):
        start = time.perf_counter()
        try:
            flow = method(m.optical, m.sar)
            if not np.isfinite(flow[:, m.valid]).all():
                raise ValueError("non-finite flow")
            results.append(CaseResult(name, m.case.case_id, flow_rmse(flow, m.flow, m.valid),
                                      time.perf_counter() - start))
        except Exception as exc:  # noqa: BLE001 - every failure is counted, with its reason
            results.append(CaseResult(name, m.case.case_id, float("inf"), time.perf_counter() - start,
                                      f"{type(exc).__name__}: {exc}"))
        if progress:
            progress(f"{name}: {i + 1}/{len(cases)} rmse {results[-1].rmse:.2f} px")
    return results


def summarise(results: list[CaseResult]) -> Summary:
    rmse = np.array([r.rmse for r in results])
    return Summary(method=results[0].method, cases=len(results),
                   cmr={k: float((rmse < k).mean()) for k in CMR_THRESHOLDS_PX},
                   median_rmse=float(np.median(rmse)), failures=sum(bool(r.error) for r in results),
                   seconds_per_case=float(np.mean([r.seconds for r in results])))


def markdown_table(summaries: list[Summary]) -> str:
    head = "| method | cases | CMR@1 | CMR@3 | CMR@5 | median RMSE (px) | failures | s / case |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    rows = [f"| {s.method} | {s.cases} | {s.cmr[1]:.0%} | {s.cmr[3]:.0%} | {s.cmr[5]:.0%} | "
            f"{s.median_rmse:.2f} | {s.failures} | {s.seconds_per_case:.2f} |" for s in summaries]
    return head + "\n".join(rows) + "\n"


def methods(names: list[str], checkpoint: str | Path | None) -> dict[str, Method]:
    """The named methods: any of `SOMA_METHODS` and of `BASELINES`."""
    out = {}
    for n in names:
        if n in SOMA_METHODS:
            out[n] = soma_method(checkpoint, SOMA_METHODS[n])
        elif n in BASELINES:
            out[n] = BASELINES[n]
        else:
            raise ValueError(f"unknown method {n!r}; expected one of {sorted(SOMA_METHODS) + sorted(BASELINES)}")
    return out


def to_records(results: list[CaseResult]) -> list[dict]:
    return [asdict(r) for r in results]
