"""The study's figures: ``figures/<sweep>.png`` (RMSE, CRPS and spread-skill ratio against severity per
method, with the t intervals) and ``figures/maps.png`` (truth, observations and each method's mean)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from slams_jax.studies.ablation.settings import SWEEPS


def sweep_figures(summary: Sequence[Mapping], methods: Sequence[str], folder: Path) -> list[str]:
    """``folder/<sweep>.png`` per sweep of ``summary``: RMSE, CRPS and spread-skill ratio (mean over channels)
    against severity, one curve per method with its t intervals. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    xlabels = {"coarsen": "coarsening factor r", "noise": "noise std (x state std)", "gap": "point gap g"}
    for sweep in SWEEPS:
        rows = [r for r in summary if r["sweep"] == sweep and r["channel"] == "all"]
        if not rows:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(17, 4))
        for ax, metric in zip(axes, ("rmse", "crps", "spread_skill")):
            for i, m in enumerate(methods):
                pts = sorted((r["severity"], r[metric], r[metric + "_ci"]) for r in rows if r["method"] == m)
                if not pts or not any(np.isfinite(p[1]) for p in pts):
                    continue  # e.g. no spread for one member: the method's style stays its own in every panel
                x, y, e = (np.array(v, np.float64) for v in zip(*pts))
                ax.errorbar(x, y, yerr=np.where(np.isfinite(e), e, 0.0), color=f"C{i % 10}",
                            marker="osD^v"[i // 10 % 5], capsize=3, label=m)
            ax.set_xlabel(xlabels[sweep])
            ax.set_title(metric)
            if sweep == "noise":
                ax.set_xscale("log", base=2)
            if metric == "spread_skill":
                ax.axhline(1.0, color="k", lw=0.5)
        handles, labels = axes[0].get_legend_handles_labels()  # beside the panels, not over the curves
        fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.86, 1))
        path = folder / f"{sweep}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(str(path))
    return paths


def maps_figure(examples: Mapping[str, np.ndarray], folder: Path, variables: Sequence[str], title: str,
                north_first: bool = False) -> str:
    """Truth, the interpolated observations and each method's ensemble mean, first channel, two states
    (north up: ``north_first`` says the rows run north to south, as the ERA5 grid's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(examples)
    truth = examples["truth"]
    times = sorted({0, truth.shape[0] // 2 + (1 if truth.shape[0] > 2 else 0) - 1})
    vmax = float(np.nanmax(np.abs(truth[..., 0])))
    fig, axes = plt.subplots(len(times), len(names), figsize=(2.4 * len(names), 2.6 * len(times)), squeeze=False)
    for row, t in zip(axes, times):
        for ax, n in zip(row, names):
            ax.imshow(examples[n][t, ..., 0], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                      origin="upper" if north_first else "lower")
            ax.set_title(f"{n}, state {t}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{variables[0]}: {title}", fontsize=9)
    fig.tight_layout()
    path = folder / "maps.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


__all__ = ["sweep_figures", "maps_figure"]
