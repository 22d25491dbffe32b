"""One process of the two-process run of ``tests/test_parallel.py`` (2 CPU devices each, one 4-device mesh).

``python tests/multihost_worker.py PROCESS_ID PORT ROOT``: joins the run through ``config.parallel``, trains
the tiny config two steps per stage, samples a posterior ensemble on the 4 devices of both processes, and
writes ``ROOT/worker<PROCESS_ID>.npz`` with the losses and the ensemble.
"""

import os
import sys

if __name__ == "__main__":  # before JAX starts its backend; importing this module (the test does) changes nothing
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from helpers import tiny_config  # noqa: E402


def config(root, process_id=-1, port=0):
    c = tiny_config(stages=("autoencoder", "score"), steps=2)
    c.data.cache_dir = os.path.join(root, "data")
    c.train.batch_size = 8
    c.train.log_every = 1
    c.train.eval_every = 2
    c.train.checkpoint_every = 2
    if port:
        c.parallel.distributed = True
        c.parallel.coordinator_address = f"localhost:{port}"
        c.parallel.num_processes = 2
        c.parallel.process_id = process_id
    return c


def ensemble(workdir, mesh=None):
    """4 members of a posterior given a coarse observation of a zero state (the same call in the test)."""
    import jax.numpy as jnp
    from slams_jax import Observation, load_trained, posterior_sample
    from slams_jax.observation.operators import Coarsen, TimeSubsample
    from slams_jax.diffusion.samplers import PredictorCorrector

    model = load_trained(workdir)
    op = TimeSubsample(3) >> Coarsen(4)
    values = np.asarray(op(jnp.zeros((7,) + model.grid + (2,), jnp.float32))) + 0.1
    return np.asarray(posterior_sample(
        jax.random.PRNGKey(0), model, [Observation("state", op, values=values, std=0.5)], n_samples=4, length=7,
        sampler=PredictorCorrector(steps=4, corrections=1), divergence_bound=None, mesh=mesh))


def main(process_id, port, root):
    from slams_jax.pipeline.training import train_and_evaluate

    results = train_and_evaluate(config(root, process_id, port), os.path.join(root, "run"))
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    x = ensemble(os.path.join(root, "run"))
    np.savez(os.path.join(root, f"worker{process_id}.npz"), ensemble=x,
             **{f"{stage}_{k}": v for stage, r in results.items() for k, v in r.items() if k in ("loss", "val_loss")})


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
