"""Observations: differentiable measurement operators, observation records, and reading observation files."""
