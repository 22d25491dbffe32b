"""Atomic, resumable checkpoints of training stages (orbax-checkpoint).

Each stage keeps its checkpoints under ``WORKDIR/checkpoints/<stage>/<step>/`` with two items:
``state`` (the :class:`~slams_jax.pipeline.training.TrainState` pytree) and ``meta`` (JSON: the settings that built
the model, the data normalization, latent statistics...). orbax writes a step into a temporary
directory and renames it when complete, so a run killed mid-save leaves the previous checkpoint intact
and loses at most the steps since then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from slams_jax._types import PyTree
from slams_jax.errors import CheckpointError


class StageCheckpointer:
    """Save and restore one training stage's state and metadata.

    Every error is a :class:`~slams_jax.errors.CheckpointError` naming the directory or the step's path.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
        )

    def latest_step(self) -> int | None:
        """The last completely written step, or ``None`` (temporary directories of unfinished saves are ignored)."""
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, meta: dict[str, Any]) -> None:
        """Write ``state`` and ``meta`` as step ``step`` (atomically) and wait until it is on disk."""
        state = jax.device_get(state)
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    def _path(self, step: int) -> Path:
        return self.directory / str(step)

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of ``step`` (default: the latest)."""
        step = self._resolve(step)
        try:
            return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"checkpoint {self._path(step)}: metadata could not be read ({type(e).__name__}: {e}). "
                "It is corrupt or incomplete: delete that directory to fall back to the previous checkpoint."
            ) from e

    def restore(self, template: PyTree, step: int | None = None) -> tuple[PyTree, dict[str, Any]]:
        """Restore ``(state, meta)`` of ``step`` (default: the latest) into the structure of ``template``."""
        step = self._resolve(step)
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {self._path(step)} could not be restored ({type(e).__name__}: {e}). It is "
                "corrupt, incomplete or was written by a different model: delete that directory to fall "
                "back to the previous checkpoint, or use a fresh --workdir."
            ) from e
        return out.state, dict(out.meta)

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step not in self._manager.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; available: {list(self._manager.all_steps())}"
            )
        return step

    def close(self) -> None:
        self._manager.close()


__all__ = ["StageCheckpointer", "CheckpointError"]
