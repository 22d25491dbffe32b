"""Studies built on the package: each one a client of the core and the pipeline, run from ``experiments/``."""
