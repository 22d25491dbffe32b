"""The models the score methods need, trained (or resumed, or reused) through the pipeline's entry.

Each model of ``config.models`` is the study's experiment narrowed to its own modalities and stages, in its
own workdir ``WORKDIR/models/<name>``, on the shared dataset (``WORKDIR/data`` unless the experiment names a
cache), so a rerun resumes or reuses it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import ml_collections

from slams_jax.pipeline.pretrained import TrainedModel, load_trained
from slams_jax.pipeline.training import train_and_evaluate
from slams_jax.studies.ablation.settings import AblationSettings


def model_config(s: AblationSettings, name: str, workdir: Path) -> ml_collections.ConfigDict:
    """The experiment config of model ``name``, for :func:`train_and_evaluate`: the experiment with only
    the model's modalities (in the experiment's order), their sources and the model's stages."""
    spec = s.models[name]
    exp = s.experiment.copy_and_resolve_references()
    with exp.unlocked():  # the pipeline's own config, narrowed: its groups are rewritten, not read
        if s.experiment_settings.data.source == "dataset":  # only the sources of the model's own modalities
            exp.data.aux = ml_collections.ConfigDict({k: v for k, v in exp.data.aux.items() if k in spec.modalities},
                                                     sort_keys=False)
            exp.data.modalities = ()  # they follow from the variables and the remaining aux
        else:
            exp.data.modalities = tuple(m for m in exp.data.modalities if m.name in spec.modalities)
        exp.stages = spec.stages
        if not s.experiment_settings.data.cache_dir:
            exp.data.cache_dir = str(workdir / "data")
    return exp


def needed_models(s: AblationSettings) -> list[str]:
    """The models of the study's score methods, each once, in the methods' order."""
    names = []
    for m in s.study.methods:
        spec = s.methods[m]
        if spec.kind == "score" and spec.model not in names:
            names.append(spec.model)
    return names


def train_models(s: AblationSettings, workdir: Path, log: Callable[[str], None]) -> dict[str, TrainedModel]:
    """Train (or resume, or reuse) every model a configured score method needs, and load it."""
    models = {}
    for name in needed_models(s):
        t0 = time.perf_counter()
        summary = train_and_evaluate(model_config(s, name, workdir), workdir / "models" / name)
        log(f"model {name}: {json.dumps(summary)} ({time.perf_counter() - t0:.0f} s)")
        models[name] = load_trained(workdir / "models" / name)
    return models


__all__ = ["model_config", "needed_models", "train_models"]
