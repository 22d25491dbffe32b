"""The twin's networks: a window noise predictor over flattened windows, and the state autoencoder.

States of the twin are vectors ``(dim,)`` carried as ``(dim, 1)``: one spatial axis (the variables, a
periodic ring for Lorenz-96) and one channel, so the pipeline's 1-D :class:`~slams_jax.nn.unet.ScoreUNet`
applies with circular padding as well as the MLP here.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from slams_jax._types import Array, Float
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.diffusion.score import MarkovScore
from slams_jax.errors import TwinError
from slams_jax.nn.layers import Conv, TimeEmbedding
from slams_jax.nn.unet import ScoreUNet
from slams_jax.twin.settings import TwinScoreSettings


class MLPScore(nn.Module):
    """Noise predictor over a whole window flattened: ``Dense`` layers modulated by the time embedding.

    Input ``(*batch, n, channels)`` (one spatial axis), output of the same shape.
    """

    hidden: Sequence[int] = (256, 256, 256)
    embedding: int = 64

    @nn.compact
    def __call__(self, x: Float[Array, "*batch n c"], t: Float[Array, "*batch"]) -> Float[Array, "*batch n c"]:
        batch = x.shape[:-2]
        h = x.reshape(batch + (-1,))
        emb = TimeEmbedding(self.embedding)(jnp.broadcast_to(t, batch))
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h) + nn.Dense(width)(emb))
        return nn.Dense(x.shape[-2] * x.shape[-1])(h).reshape(x.shape)


class RingResNetScore(nn.Module):
    """Local, translation-equivariant noise predictor over a periodic ring: circular 1-D residual convolutions.

    Input ``(*batch, n, channels)`` (the window's states stacked as channels), output of the same shape. Every
    layer is a circular convolution or acts per site, so a rotated window gives the rotated prediction; the
    receptive field is ``1 + (kernel_size - 1) * (2 * blocks + 2)`` sites. Each block is
    ``h + conv(silu(conv(silu(norm(h))) + dense(time embedding)))``.
    """

    width: int = 64
    blocks: int = 4
    kernel_size: int = 5
    embedding: int = 64

    @nn.compact
    def __call__(self, x: Float[Array, "*batch n c"], t: Float[Array, "*batch"]) -> Float[Array, "*batch n c"]:
        batch = x.shape[:-2]
        emb = nn.silu(TimeEmbedding(self.embedding)(jnp.broadcast_to(t, batch)))

        def conv(features):
            return Conv(features, self.kernel_size, padding_modes=("circular",))

        h = conv(self.width)(x)
        for _ in range(self.blocks):
            y = conv(self.width)(nn.silu(nn.LayerNorm()(h)))
            y = y + nn.Dense(self.width)(emb)[..., None, :]
            h = h + conv(self.width)(nn.silu(y))
        return conv(x.shape[-1])(nn.silu(nn.LayerNorm()(h)))


class TwinAutoencoder(nn.Module):
    """Autoencoder of one state ``(*b, dim, 1)``.

    ``kind="mlp"``: latent ``(latent, 1)``. ``kind="conv"``: circular 1-D convolutions (the periodic ring of
    Lorenz-96 stays a ring), latent ``(dim // downsample, latent)``: ``downsample=2`` is one stride-2
    convolution (nearest upsampling back), ``downsample=1`` keeps every site (no spatial compression).
    """

    dim: int
    kind: str = "mlp"
    latent: int = 4
    hidden: int = 64
    downsample: int = 2

    def setup(self):
        if self.kind == "mlp":
            self.enc = [nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(self.latent)]
            self.dec = [nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(self.dim)]
        elif self.kind == "conv":
            if self.downsample not in (1, 2):
                raise TwinError(f"autoencoder downsample={self.downsample}: expected 1 or 2")
            # the pipeline's Conv: its input gradient runs fast inside the sampler's loops (nn.Conv's does not)
            conv = lambda c, s=1: Conv(c, 5, strides=s, padding_modes=("circular",))
            self.enc = [conv(self.hidden), conv(self.hidden, self.downsample), conv(self.hidden), conv(self.latent)]
            self.dec = [conv(self.hidden), conv(self.hidden), conv(self.hidden), conv(1)]
        else:
            raise TwinError(f"autoencoder kind={self.kind!r}: expected 'mlp' or 'conv'")

    @staticmethod
    def _run(layers, h, between=None, repeat=2):
        for i, layer in enumerate(layers):
            h = layer(h)
            if between is not None and i == between and repeat > 1:
                h = jnp.repeat(h, repeat, axis=-2)  # nearest upsampling along the ring
            if i < len(layers) - 1:
                h = nn.silu(h)
        return h

    def encode(self, x: Float[Array, "*b dim 1"]) -> Array:
        if self.kind == "mlp":
            return self._run(self.enc, x[..., 0])[..., None]
        return self._run(self.enc, x)

    def decode(self, z: Array) -> Float[Array, "*b dim 1"]:
        if self.kind == "mlp":
            return self._run(self.dec, z[..., 0])[..., None]
        return self._run(self.dec, z, between=0, repeat=self.downsample)

    def __call__(self, x):
        return self.decode(self.encode(x))


def build_score(score: TwinScoreSettings, channels: int, schedule: VPSchedule) -> MarkovScore:
    """The window score model of ``score`` for states ``(dim, channels)``, with the Gaussian skip of ``schedule``."""
    net, window = score.network, score.window
    if net.kind == "mlp":
        module = MLPScore(hidden=net.hidden, embedding=net.embedding)
    elif net.kind == "resnet":
        if len(net.hidden) != 1 or len(net.blocks) != 1:
            raise TwinError(f"config.score.network: kind='resnet' takes one width (hidden={net.hidden}) and one "
                            f"block count (blocks={net.blocks})")
        module = RingResNetScore(width=net.hidden[0], blocks=net.blocks[0], kernel_size=net.kernel_size,
                                 embedding=net.embedding)
    elif net.kind == "unet":
        module = ScoreUNet(channels=window * channels, embedding=net.embedding, hidden_channels=net.hidden,
                           hidden_blocks=net.blocks, kernel_size=net.kernel_size, padding_modes=("circular",))
    else:
        raise TwinError(f"config.score.network.kind={net.kind!r}: expected 'mlp', 'resnet' or 'unet'")
    return MarkovScore(module, order=score.order, spatial=1, skip=schedule)


__all__ = ["MLPScore", "RingResNetScore", "TwinAutoencoder", "build_score"]
