"""Shared test fixtures: tiny configs that train in seconds on a CPU."""

import functools
import math
import runpy
import types
import typing
from pathlib import Path

import beartype
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str = "kolmogorov", variant: str = ""):
    return runpy.run_path(str(ROOT / "configs" / f"{name}.py"))["get_config"](variant)


def tiny_config(stages=("autoencoder", "score"), steps=6):
    """The Kolmogorov config shrunk to a 16x16 grid, a handful of trajectories and steps."""
    c = load_config()
    c.stages = stages
    c.data.n_train, c.data.n_valid, c.data.n_test, c.data.n_states = 3, 1, 1, 8
    k = c.data.kolmogorov
    k.grid, k.out_grid = 32, 16
    k.spinup_time = 1.0
    k.spinup_grid = 32
    k.relax_time = 0.2
    c.autoencoder.hidden_channels = (8, 8)
    c.autoencoder.latent_channels = 2
    c.autoencoder.downsample = 2
    for s in (c.score, c.pixel_score):
        s.order = 1
        s.embedding = 8
        s.hidden_channels = (8, 8)
        s.hidden_blocks = (1, 1)
    c.train.steps = steps
    c.train.autoencoder.steps = steps
    c.train.batch_size = 4
    c.train.warmup_steps = 2
    c.train.log_every = 2
    c.train.eval_every = 3
    c.train.eval_batches = 1
    c.train.checkpoint_every = 3
    c.train.max_to_keep = 3
    return c


def shrink_networks(c, steps=2):
    """Networks of a few channels and ``steps`` training steps per stage: for end-to-end runs whose scores,
    not their quality, are under test."""
    c.autoencoder.hidden_channels, c.autoencoder.latent_channels = (4,), 2
    c.score.hidden_channels, c.score.hidden_blocks, c.score.embedding = (8, 8), (1, 1), 8
    for k, v in dict(steps=steps, batch_size=4, warmup_steps=1, log_every=1, eval_every=steps, eval_batches=1,
                     checkpoint_every=steps).items():
        setattr(c.train, k, v)
    c.train.autoencoder.steps = steps
    return c


def conv_dtypes(fn, *args) -> list[tuple[tuple[str, ...], str]]:
    """``(operand dtypes, result dtype)`` of every convolution in the jaxpr of ``fn`` (nested jaxprs included)."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                found.append((tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype)))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


# The test networks are tiny, so compiling dominates their cost on CPU; LLVM optimisation is most of it.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _field(seed, shape):
    # numpy RNG: jax.random would compile a sampler for every new shape, which dominates test time on CPU.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=jnp.float32)


def _params(module, *args, seed=0):
    """Random parameters with the structure of module.init, without compiling an initializer."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)

    def fill(leaf):
        scale = 1.0 / math.sqrt(math.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(rng.standard_normal(leaf.shape) * scale, dtype=leaf.dtype)

    return jax.tree.map(fill, shapes)


def _has_array_hint(hint) -> bool:
    if isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray):
        return True
    if isinstance(hint, (list, tuple)):  # the parameter list of a Callable[[...], ...]
        return any(_has_array_hint(h) for h in hint)
    return any(_has_array_hint(h) for h in typing.get_args(hint))


def _numpy_too(hint):
    # Float[jax.Array, dims] -> Float[jax.Array | np.ndarray, dims], inside Optional/Union too: the functions take
    # array-likes (jnp.asarray on entry) and the indexing ones return NumPy for NumPy; shapes and dtypes still count.
    if isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray) and hint.array_type is jax.Array:
        return hint.dtype[typing.Union[jax.Array, np.ndarray], hint.dim_str]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.Union[tuple(_numpy_too(h) for h in typing.get_args(hint))]
    return hint


def array_typechecker(fn):
    """beartype restricted to the hints that hold a jaxtyping array type (``Float[Array, "time lat lon"]``...).

    The test suite's jaxtyping import hook (conftest.py) decorates every function of slams_jax with this, so
    shapes and dtypes are checked at every call (at trace time under ``jit``); a NumPy array passes for a JAX
    one. The other hints are not checked: a ``Literal`` setting would raise a ``TypeError`` before the code's
    own ``ValueError`` that names the choices (which the tests check), and ``float`` hints would refuse ints.
    """
    fn.__annotations__ = {k: _numpy_too(h) if _has_array_hint(h) else typing.Any for k, h in fn.__annotations__.items()}
    return beartype.beartype(fn)
