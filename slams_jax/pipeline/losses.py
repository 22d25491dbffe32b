"""The losses of the training stages, as ``loss_fn(params, batch_stats, frozen, batch, key, train)``.

- ``autoencoder``: every modality of a state is encoded into one latent field and decoded back through its
  own head; the loss is ``sum_m w_m / sum(w) * MSE_m`` over the valid (finite) points of each modality,
  where ``w_m`` is ``modality.weight``. While training, each auxiliary modality is hidden from the encoder
  with probability ``aux_dropout`` (its mask set to false), so the latent space also works without it.
- ``score`` / ``pixel_score``: the denoising loss of the window score
  (:func:`slams_jax.diffusion.score.denoising_loss`) on windows of standardized latents (the frozen encoder
  runs inside the step, its output standardized with the latent statistics) or of normalized states.

On a geographic grid, ``lat_weights`` (one per data row, from the cell areas) weight every squared error
by its row; in latent space a row covers ``downsample`` data rows and takes their mean weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.diffusion.score import denoising_loss
from slams_jax.nn.autoencoder import masked_mse
from slams_jax.pipeline.configuration import Settings
from slams_jax.pipeline.models import build_autoencoder, build_score, encode_states, standardize
from slams_jax.pipeline.optimization import LossFn


def autoencoder_loss_fn(settings: Settings, aux_dropout: float, lat_weights: np.ndarray | None = None) -> LossFn:
    """Masked reconstruction loss of every modality, weighted by ``modality.weight`` (and by cell area along
    latitude with ``lat_weights``)."""
    area = None if lat_weights is None else jnp.asarray(lat_weights, jnp.float32).reshape(-1, 1, 1)
    model = build_autoencoder(settings)
    modalities = settings.data.modalities
    total_weight = sum(m.weight for m in modalities)

    def loss_fn(params, batch_stats, frozen, batch, key, train):
        del frozen
        masks = {}
        keys = jax.random.split(key, len(modalities))
        for i, m in enumerate(modalities):
            valid = jnp.isfinite(batch[m.name])
            if train and i > 0 and aux_dropout > 0:
                n = batch[m.name].shape[0]
                keep = jax.random.uniform(keys[i], (n, 1, 1, 1)) >= aux_dropout
                valid = valid & keep
            masks[m.name] = valid
        variables = {"params": params}
        mutable = False
        if batch_stats:
            variables["batch_stats"] = batch_stats
            mutable = ["batch_stats"] if train else False
        out = model.apply(variables, dict(batch), masks, train=train, mutable=mutable)
        if mutable:
            (_, recon), updates = out
            new_stats = updates["batch_stats"]
        else:
            _, recon = out
            new_stats = batch_stats
        metrics, loss = {}, jnp.float32(0.0)
        for m in modalities:
            target = batch[m.name]
            err = masked_mse(recon[m.name], target, jnp.isfinite(target), area)
            metrics[f"mse_{m.name}"] = err
            loss = loss + (m.weight / total_weight) * err
        return loss, (metrics, new_stats)

    return loss_fn


def score_loss_fn(settings: Settings, stage: str, lat_weights: np.ndarray | None = None) -> LossFn:
    """Denoising loss of the window score, on standardized latents (``score``) or states (``pixel_score``);
    ``lat_weights`` (on the data grid) weights it by cell area along latitude."""
    score = build_score(settings, stage)
    state_name = settings.data.state.name
    area = None
    if lat_weights is not None:
        w = np.asarray(lat_weights, np.float64)
        factor = settings.autoencoder.downsample if stage == "score" else 1
        if factor > 1:  # the latent rows cover `factor` data rows each
            rows = len(w) // factor
            w = w[: rows * factor].reshape(rows, factor).mean(1)
        area = jnp.asarray(w, jnp.float32).reshape(-1, 1, 1)

    def loss_fn(params, batch_stats, frozen, batch, key, train):
        del batch_stats, train
        if stage == "score":
            z = encode_states(settings, frozen["autoencoder"], batch)  # (B, W, h, w, c)
            x = jax.lax.stop_gradient(standardize(z, frozen["latent_mean"], frozen["latent_std"]))
        else:
            x = batch[state_name]
        weights = None if area is None else area[: x.shape[-3]]
        loss = denoising_loss(lambda xt, t: score.window_eps(params, xt, t), settings.sde, key, x, weights)
        return loss, ({}, {})

    return loss_fn


__all__ = ["autoencoder_loss_fn", "score_loss_fn"]
