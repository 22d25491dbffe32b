"""SPMD data parallelism: one ``data`` mesh axis over every device, on one host or many.

The design card's "pmapped across accelerators", written with today's JAX (``jax.pmap`` is in
maintenance mode and itself lowers to ``shard_map``): a :class:`~jax.sharding.Mesh` with one axis,
``data``, over every visible device, and ``NamedSharding`` to say what is split and what is copied.

- **Training** (:mod:`slams_jax.pipeline.training`): the train step is one ``jax.jit`` over the mesh. The global batch
  is a ``jax.Array`` split over ``data`` (``P("data")``); parameters, EMA, optimizer state and the frozen
  encoder are replicated (``P()``). XLA's SPMD partitioner runs the step on every device on its own rows
  and inserts the all-reduces (gradients, loss and metrics, BatchNorm statistics) inside the compiled
  step. The step therefore computes what it computes on one device for the same global batch, to float
  rounding, and its random numbers do not depend on the sharding (``jax_threefry_partitionable``).
- **Sampling** (:mod:`slams_jax.diffusion.ensemble`): members are independent, so the ensemble is a
  ``jax.shard_map`` over ``data`` in which every device integrates its own members with no communication
  (the per-device program of ``pmap``). With fewer members than devices, a trained prior's score
  windows are spread over the devices instead (a sharding constraint on the window axis).
- **Input** (:func:`global_batch`): the sharded batch is built with ``jax.make_array_from_callback``, so each
  device's rows are gathered on their own: no host copy of the whole batch, and every process reads only
  the rows of its own devices.
- **Multi-host** (:func:`initialize`): ``jax.distributed.initialize`` joins one process per host; then
  ``jax.devices()`` lists the devices of every process and the same mesh spans them. Every process runs
  the same program; only process 0 writes files (:func:`is_main_process`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from slams_jax._types import PyTree
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings record lives in the runtime; the mesh helpers need only its fields
    from slams_jax.pipeline.configuration import ParallelSettings

DATA = "data"


def initialize(settings: ParallelSettings) -> None:
    """Join the multi-host run if ``settings.distributed`` (call before any other JAX work); else nothing."""
    if not settings.distributed or jax.distributed.is_initialized():
        return
    kwargs = {}
    if settings.coordinator_address:
        kwargs["coordinator_address"] = settings.coordinator_address
    if settings.num_processes:
        kwargs["num_processes"] = settings.num_processes
    if settings.process_id >= 0:
        kwargs["process_id"] = settings.process_id
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # the causes (no coordinator, wrong ids, a cluster not detected) raise many types
        raise RuntimeError(
            f"config.parallel.distributed: jax.distributed.initialize({kwargs}) failed ({type(e).__name__}: {e}). "
            "Give config.parallel.coordinator_address=HOST:PORT of process 0, num_processes and process_id, "
            "unless the cluster (SLURM, Open MPI) provides them."
        ) from e


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ``("data",)``: every device of every process (``None`` or 0), the first ``devices``
    devices, or the given devices."""
    visible = jax.devices()
    if devices is None or (isinstance(devices, int) and devices == 0):
        chosen = visible
    elif isinstance(devices, int):
        if devices < 0 or devices > len(visible):
            raise ValueError(
                f"config.parallel.devices={devices}: {len(visible)} device(s) are visible "
                f"({visible[0].platform}); use 0 for all of them or a number up to {len(visible)}"
            )
        if jax.process_count() > 1 and devices != len(visible):
            raise ValueError(
                f"config.parallel.devices={devices}: a multi-host run uses every device of every process "
                f"({len(visible)}); leave it at 0"
            )
        chosen = visible[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("data_mesh: the list of devices is empty")
    return Mesh(np.asarray(chosen), (DATA,))


def describe(mesh: Mesh) -> str:
    """E.g. ``4 cpu devices`` or ``16 gpu devices in 2 processes``."""
    devices = list(mesh.devices.flat)
    processes = len({d.process_index for d in devices})
    where = f" in {processes} processes" if processes > 1 else ""
    return f"{len(devices)} {devices[0].platform} device{'s' if len(devices) > 1 else ''}{where}"


def check_divisible(size: int, mesh: Mesh, what: str) -> None:
    """Raise a clear error when ``size`` rows cannot be split evenly over the mesh's devices."""
    n = mesh.size
    if size % n == 0:
        return
    lower = size // n * n
    options = [str(v) for v in (lower, lower + n) if v > 0]
    raise ValueError(
        f"{what}={size} is not divisible by the {describe(mesh)} of the data mesh: use "
        f"{' or '.join(options)} (a multiple of {n}), or config.parallel.devices set to a divisor of {size}"
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading axis is split over the ``data`` axis."""
    return NamedSharding(mesh, P(DATA))


def put(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Place host (or single-device) values with ``sharding``; every process must pass the same values."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = to_host(x)
        return jax.make_array_from_callback(np.shape(x), sharding, lambda index: x[index])

    return jax.tree_util.tree_map(one, tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """A copy of ``tree`` on every device of ``mesh``."""
    return put(tree, replicated(mesh))


def _bounds(index: slice, size: int) -> tuple[int, int]:
    start, stop, _ = index.indices(size)
    return start, stop


def global_batch(
    fetch: Callable[[np.ndarray], Mapping[str, np.ndarray]], batch_size: int, mesh: Mesh
) -> dict[str, jax.Array]:
    """A batch split over the ``data`` axis, each device's rows fetched on their own.

    Args:
        fetch: ``rows -> {name: array (len(rows), ...)}`` for the rows ``rows`` (indices into the global
            batch) of every field; called once per addressable device with that device's rows.
        batch_size: Rows of the global batch, a multiple of the mesh size.
        mesh: The data mesh.

    Returns:
        ``{name: jax.Array (batch_size, ...)}`` sharded with ``P("data")``.
    """
    check_divisible(batch_size, mesh, "batch size")
    sharding = batch_sharded(mesh)
    shards: dict[tuple[int, int], Mapping[str, np.ndarray]] = {}

    def shard(index: slice) -> Mapping[str, np.ndarray]:
        bounds = _bounds(index, batch_size)
        if bounds not in shards:
            shards[bounds] = fetch(np.arange(*bounds))
        return shards[bounds]

    first = next(iter(sharding.addressable_devices_indices_map((batch_size,)).values()))[0]
    example = shard(first)
    return {
        name: jax.make_array_from_callback(
            (batch_size,) + a.shape[1:], sharding, lambda index, name=name: shard(index[0])[name]
        )
        for name, a in example.items()
    }


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies of the leaves; a replicated array is read from a local device, a sharded one gathered
    from every process."""

    def one(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)


def is_main_process() -> bool:
    """Whether this process writes files (process 0 of a multi-host run; always true on one host)."""
    return jax.process_index() == 0


__all__ = [
    "DATA", "initialize", "data_mesh", "describe", "check_divisible", "replicated", "batch_sharded", "put",
    "replicate", "global_batch", "to_host", "is_main_process",
]
