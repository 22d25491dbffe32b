"""The ablation study: ``python experiments/ablation.py --config=configs/ablation.py --workdir=runs/ablation``.

A thin runner of :mod:`slams_jax.studies.ablation` (what it trains, runs and writes is described there);
``python -m slams_jax.studies.ablation`` takes the same flags.
"""

from slams_jax.studies.ablation.cli import run

if __name__ == "__main__":
    run()
