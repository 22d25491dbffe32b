"""``python -m slams_jax.studies.ablation --config=configs/ablation.py --workdir=runs/ablation``."""

from slams_jax.studies.ablation.cli import run

if __name__ == "__main__":
    run()
