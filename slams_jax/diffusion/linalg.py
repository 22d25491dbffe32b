r"""Matrix-free linear solves, shared by the guidance (MMPS) and the variational baselines (3D-Var, OI).

One conjugate-gradient implementation for symmetric positive (semi-)definite operators given as
``matvec``. It starts from 0 and stops after ``maxiter`` iterations or once
:math:`\|r\| \le \mathrm{tol}\, \|b\|`. ``tol = 0`` gives a fixed number of iterations, as MMPS uses inside
the sampler. A direction with non-positive curvature :math:`p^\top A p \le 0` takes no step, so an
operator that is only approximately positive (a learned denoiser's Jacobian) cannot blow the iterate up.
It runs as a ``lax.while_loop``, so it vmaps (each member stops at its own residual) but is not
reverse-differentiable; callers hold the solution fixed when differentiating, as MMPS does.

:func:`safeguarded_cg` is the variant for operators known to be at least ``floor * I`` but evaluated
through a learned map that may break it (MMPS's whitened ``I + A Cov A^T`` with a learned denoiser): the
curvature of each direction is floored, the iterate with the smallest residual is returned, and whether the
operator fell far below its floor is reported, so the caller can fall back to another approximation.

For small dense systems solved many times inside a loop (the twins' filters), :func:`spd_solve` is a direct
Gauss-Jordan solve for symmetric positive definite matrices.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from slams_jax._types import Array, Float, Int


def conjugate_gradient(
    matvec: Callable[[Array], Array], b: Float[Array, "*shape"], maxiter: int, tol: float = 0.0,
) -> tuple[Float[Array, "*shape"], Int[Array, ""], Float[Array, ""]]:
    """Solve ``matvec(x) = b`` by conjugate gradients from ``x = 0``.

    Args:
        matvec: The symmetric positive definite operator, ``x -> A x`` (same shape as ``b``).
        b: Right-hand side.
        maxiter: Largest number of iterations.
        tol: Stop once the residual norm is at most ``tol`` times ``|b|`` (0: run all ``maxiter``).

    Returns:
        ``(x, iterations, |r| / |b|)``.
    """
    bb = jnp.vdot(b, b)
    threshold = jnp.square(tol) * bb

    def cond(state):
        k, _, _, _, rr = state
        return (k < maxiter) & (rr > threshold)

    def body(state):
        k, x, r, p, rr = state
        ap = matvec(p)
        pap = jnp.vdot(p, ap)
        alpha = jnp.where(pap > 0, rr / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = jnp.vdot(r, r)
        # rr > threshold >= 0 here, except for finished members of a vmapped solve (their update is discarded)
        p = r + jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1.0), 0.0) * p
        return k + 1, x, r, p, rr_new

    state = (jnp.asarray(0, jnp.int32), jnp.zeros_like(b), b, b, bb)
    k, x, _, _, rr = jax.lax.while_loop(cond, body, state)
    residual = jnp.sqrt(rr / jnp.where(bb > 0, bb, 1.0))
    return x, k, residual


def safeguarded_cg(
    matvec: Callable[[Array], Array], b: Float[Array, "*shape"], maxiter: int, tol: float = 0.0,
    floor: float = 1.0, breakdown: float = 0.5,
) -> tuple[Float[Array, "*shape"], Int[Array, ""], Float[Array, ""], Array]:
    """Conjugate gradients for an operator that should be at least ``floor * I`` but may not be.

    Each step length uses the curvature ``max(p^T A p, floor |p|^2)``, so no step is longer than it would be
    for the smallest admissible operator (``alpha |p| <= |r|^2 / (floor |p|)``), and the iterate with the
    smallest residual (never above ``|b|``, that of ``x = 0``) is returned. On an operator that is
    ``>= floor * I`` the floor never acts and this is plain CG.

    Args:
        matvec: The operator, ``x -> A x`` (same shape as ``b``); symmetric ``>= floor * I`` when exact.
        b: Right-hand side.
        maxiter: Largest number of iterations.
        tol: Stop once the residual norm is at most ``tol`` times ``|b|`` (0: run all ``maxiter``).
        floor: The operator's known lower bound (1 for ``I + PSD``).
        breakdown: A direction with ``p^T A p < breakdown * floor * |p|^2`` marks the operator as broken.

    Returns:
        ``(x, iterations, |r| / |b|, sound)``: ``sound`` is False when some direction broke down.
    """
    bb = jnp.vdot(b, b)
    threshold = jnp.square(tol) * bb

    def cond(state):
        k, _, _, _, rr, _, _, _ = state
        return (k < maxiter) & (rr > threshold)

    def body(state):
        k, x, r, p, rr, best, best_rr, sound = state
        ap = matvec(p)
        pap, pp = jnp.vdot(p, ap), jnp.vdot(p, p)
        sound = sound & ~(pap < breakdown * floor * pp)
        curvature = jnp.maximum(pap, floor * pp)
        alpha = jnp.where(curvature > 0, rr / jnp.where(curvature > 0, curvature, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = jnp.vdot(r, r)
        better = rr_new < best_rr
        best, best_rr = jnp.where(better, x, best), jnp.where(better, rr_new, best_rr)
        p = r + jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1.0), 0.0) * p
        return k + 1, x, r, p, rr_new, best, best_rr, sound

    zero = jnp.zeros_like(b)
    state = (jnp.asarray(0, jnp.int32), zero, b, b, bb, zero, bb, jnp.asarray(True))
    k, _, _, _, _, best, best_rr, sound = jax.lax.while_loop(cond, body, state)
    return best, k, jnp.sqrt(best_rr / jnp.where(bb > 0, bb, 1.0)), sound


def spd_solve(s: Float[Array, "n n"], b: Float[Array, "n m"]) -> Float[Array, "n m"]:
    """Solve ``s x = b`` for a symmetric positive definite ``s (n, n)`` and ``b (n, m)``.

    Gauss-Jordan elimination without pivoting (stable for SPD matrices, whose pivots are positive) in a
    ``fori_loop`` of ``n`` rank-1 updates. Used instead of ``jax.scipy.linalg.cho_solve`` inside the
    filter loops because the CPU LAPACK kernels call multithreaded OpenBLAS, and on a shared
    (oversubscribed) CPU each of the ~1000 small factorizations then waits for descheduled threads:
    a Lorenz-96 EnKF run took 0.1 to 20 s depending on the load, against a steady 0.1 s here.
    """
    n = s.shape[0]

    def eliminate(j, aug):
        row = aug[j] / aug[j, j]
        col = aug[:, j].at[j].set(0.0)
        return (aug - col[:, None] * row[None, :]).at[j].set(row)

    return jax.lax.fori_loop(0, n, eliminate, jnp.concatenate([s, b], axis=1))[:, n:]


__all__ = ["conjugate_gradient", "safeguarded_cg", "spd_solve"]
