r"""The study's summaries: per sweep, severity, method and channel, the mean over windows of every metric with
a two-sided t interval,

.. math:: \bar x \pm t_{(1 + c)/2,\, n - 1}\, s / \sqrt{n},

(``c`` the confidence, ``s`` the sample std of the ``n`` windows' values; failed windows are left out of a
metric they have no value for), written as ``summary.csv`` and as the markdown tables of ``table.md``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from slams_jax.studies.ablation.methods import METRICS
from slams_jax.studies.ablation.settings import SWEEPS


def _t_quantile(p: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def summarize(rows: Sequence[Mapping], confidence: float) -> list[dict]:
    """Mean over windows of every metric with a two-sided t interval, per sweep/severity/method/channel."""
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["sweep"], r["severity"], r["method"], r["channel"]), []).append(r)
    out = []
    for (sweep, severity, method, channel), rs in groups.items():
        rec: dict[str, Any] = {"sweep": sweep, "severity": severity, "method": method, "channel": channel,
                               "windows": len(rs), "failed": sum(bool(r.get("error")) for r in rs)}
        for m in METRICS + ("seconds",):
            v = np.array([r[m] for r in rs if r.get(m) is not None and np.isfinite(r[m])], np.float64)
            rec[m] = float(v.mean()) if v.size else float("nan")
            half = (_t_quantile(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
                    if v.size > 1 else float("nan"))
            rec[m + "_ci"] = half
        out.append(rec)
    return out


def write_csv(path: Path, rows: Sequence[Mapping]) -> None:
    """``rows`` as a CSV file (the union of their keys as columns), replaced atomically; nothing if empty."""
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _cell(r: Mapping | None, metric: str) -> str:
    if r is None or not np.isfinite(r[metric]):
        return "—" if r is None or not r["failed"] else "diverged"
    ci = r[metric + "_ci"]
    cell = f"{r[metric]:.3f}" + (f" ± {ci:.3f}" if np.isfinite(ci) else "")
    return cell + (f" ({r['failed']} failed)" if r["failed"] else "")


def markdown_table(summary: Sequence[Mapping], methods: Sequence[str], metric: str, channel: str = "all") -> str:
    """One table per sweep: methods as rows, severities as columns, ``mean ± half-width`` cells."""
    lines = []
    by = {(r["sweep"], r["severity"], r["method"]): r for r in summary if r["channel"] == channel}
    for sweep in SWEEPS:
        sev = sorted({s for (sw, s, _) in by if sw == sweep})
        if not sev:
            continue
        what = "mean over channels" if channel == "all" else f"channel {channel}"
        lines.append(f"**{metric}**, sweep `{sweep}` ({what}; mean ± CI half-width over windows)")
        lines.append("")
        lines.append("| method | " + " | ".join(f"{sweep}={s:g}" for s in sev) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in sev) + " |")
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_cell(by.get((sweep, s, m)), metric) for s in sev) + " |")
        lines.append("")
    return "\n".join(lines)


def study_table(summary: Sequence[Mapping], methods: Sequence[str], header: str) -> str:
    """``table.md``: ``header``, then RMSE, CRPS and spread-skill ratio per method against severity."""
    return header + "\n".join(markdown_table(summary, methods, m) for m in ("rmse", "crps", "spread_skill"))


__all__ = ["summarize", "write_csv", "markdown_table", "study_table"]
