"""Observation records: synthetic observations, noise statistics, and the checks that name what is wrong."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slams_jax
from slams_jax.errors import Error
from slams_jax.observation.observations import Observation, ObservationError, check_observations, observe
from slams_jax.observation.operators import Channels, Coarsen, Identity, Points, Saturate, TimeIndex, TimeSubsample

SHAPE = (4, 16, 16, 2)  # (time, lat, lon, channel)
SHAPES = {"state": SHAPE, "precip": (4, 16, 16, 1)}


def _truth(seed=0, shape=SHAPE):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# ---------------------------------------------------------------------------------------------------- observe
def test_observe_is_operator_of_truth_plus_std_times_the_keys_normal_draw():
    truth, op, key = _truth(), TimeSubsample(2, offset=1) >> Coarsen(2), jax.random.PRNGKey(3)
    obs = observe(key, truth, op, 0.3, name="coarse")
    clean = np.asarray(op(truth))
    assert obs.values.shape == clean.shape == (2, 8, 8, 2) and obs.values.dtype == np.float32
    # the noise is exactly std * N(0, I) drawn from the given key, on the operator's output shape
    draw = np.asarray(jax.random.normal(key, clean.shape, jnp.float32))
    np.testing.assert_allclose(obs.values, clean + 0.3 * draw, rtol=0, atol=1e-6)
    # the std is kept as the float32 the values are in
    assert (obs.modality, obs.operator, obs.std, obs.name) == ("state", op, float(np.float32(0.3)), "coarse")


def test_observe_noise_statistics_scalar_and_per_channel_std():
    shape = (8, 32, 32, 2)  # 8192 values per channel
    truth = _truth(1, shape)
    n = shape[0] * shape[1] * shape[2]
    for std in (0.25, (0.05, 2.0)):  # per channel: what a relative_std becomes (a fraction of each channel's std)
        obs = observe(jax.random.PRNGKey(7), truth, Identity(), std)
        noise = (obs.values - np.asarray(truth)).reshape(-1, 2)
        expected = np.broadcast_to(np.asarray(std, np.float64), (2,))
        # the sample mean is within 4 standard errors of 0, the sample std within 4 of its own standard error
        np.testing.assert_array_less(np.abs(noise.mean(axis=0)), 4 * expected / np.sqrt(n))
        np.testing.assert_array_less(np.abs(noise.std(axis=0) / expected - 1.0), 4 / np.sqrt(2 * n))
        # the channels' noises are independent draws (not one draw scaled twice)
        assert abs(np.corrcoef(noise.T)[0, 1]) < 4 / np.sqrt(n)
    assert obs.std == (float(np.float32(0.05)), 2.0) and isinstance(obs.std, tuple)


def test_observe_same_key_same_values_other_key_other_values():
    truth, op = _truth(2), TimeIndex((3, 0)) >> Points((1, 5, 9), (2, 2, 15))
    a = observe(jax.random.PRNGKey(11), truth, op, 0.5)
    b = observe(jax.random.PRNGKey(11), truth, op, 0.5)
    c = observe(jax.random.PRNGKey(12), truth, op, 0.5)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape == (2, 3, 2) and not np.allclose(a.values, c.values)
    # the noise does not depend on the truth: the same key adds the same noise to another trajectory
    other = _truth(3)
    d = observe(jax.random.PRNGKey(11), other, op, 0.5)
    np.testing.assert_allclose(d.values - np.asarray(op(other)), a.values - np.asarray(op(truth)), atol=1e-6)


def test_observe_nonlinear_operator_and_default_name():
    truth, op = 3.0 * _truth(4), Channels((1,)) >> Saturate(0.5)
    obs = observe(jax.random.PRNGKey(0), truth, op, 1e-3, modality="state")
    np.testing.assert_allclose(obs.values, 0.5 * np.tanh(np.asarray(truth)[..., 1:] / 0.5), atol=6e-3)
    assert np.abs(obs.values).max() < 0.5 + 6e-3
    assert obs.name == f"state:{op!r}"


# ------------------------------------------------------------------------------------------------ std_array
def test_std_array_broadcasts_scalar_and_per_channel_std():
    values = np.zeros((3, 5, 2), np.float32)
    scalar = Observation("state", Points((0,) * 5, (1,) * 5), values, std=0.2).std_array()
    assert scalar.shape == values.shape and scalar.dtype == np.float32
    np.testing.assert_array_equal(scalar, np.full(values.shape, np.float32(0.2)))
    per_channel = Observation("state", Points((0,) * 5, (1,) * 5), values, std=(0.5, 4.0)).std_array()
    assert per_channel.shape == values.shape and per_channel.flags.writeable  # a copy, not a read-only view
    np.testing.assert_array_equal(per_channel[..., 0], 0.5)
    np.testing.assert_array_equal(per_channel[..., 1], 4.0)


def test_observation_stores_float32_values_and_python_stds():
    obs = Observation("state", Identity(), np.ones((2, 3), np.float64), std=np.float64(0.5))
    assert obs.values.dtype == np.float32 and obs.std == 0.5 and type(obs.std) is float
    obs = Observation("state", Identity(), np.ones((2, 3)), std=(np.float64(1.0), 2.0, 0.1))
    assert obs.std == (1.0, 2.0, float(np.float32(0.1))) and all(type(s) is float for s in obs.std)


# ------------------------------------------------------------------------------------- construction errors
def test_nan_values_are_refused_naming_the_observation_count_and_first_index():
    values = np.zeros((2, 4, 1), np.float32)
    values[1, 2, 0], values[1, 3, 0] = np.nan, np.inf
    with pytest.raises(ObservationError, match=re.escape("observation 'buoys': 2 of 8 values are NaN or infinite "
                                                         "(first at index (1, 2, 0))")):
        Observation("state", Points((0,) * 4, (0,) * 4), values, name="buoys")


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan"), (1.0, 0.0)])
def test_non_positive_or_nan_std_is_refused(std):
    with pytest.raises(ObservationError, match=r"observation 'o': noise std .* must be finite and positive"):
        Observation("state", Identity(), np.zeros((2, 3, 2)), std=std, name="o")


def test_per_channel_std_must_match_the_last_axis():
    with pytest.raises(ObservationError, match=re.escape("observation 'o': 3 noise stds given but the values have "
                                                         "shape (2, 5, 2); expected a scalar, one per channel")):
        Observation("state", Identity(), np.zeros((2, 5, 2)), std=(1.0, 2.0, 3.0), name="o")


def test_per_value_std_is_kept_read_only_and_must_match_the_values():
    std = np.arange(1.0, 11.0).reshape(1, 5, 2)
    obs = Observation("state", Identity(), np.zeros((1, 5, 2)), std=std, name="o")
    assert isinstance(obs.std, np.ndarray) and not obs.std.flags.writeable
    np.testing.assert_array_equal(obs.std_array(), std.astype(np.float32))
    assert obs.std_summary() == {"min": 1.0, "mean": 5.5, "max": 10.0}
    assert Observation("state", Identity(), np.zeros((1, 5, 2)), std=(1.0, 2.0)).std_summary() == (1.0, 2.0)
    with pytest.raises(ObservationError, match=re.escape("observation 'o': noise stds of shape (1, 5, 1) but values "
                                                         "of shape (1, 5, 2)")):
        Observation("state", Identity(), np.zeros((1, 5, 2)), std=np.ones((1, 5, 1)), name="o")
    bad = std.copy()
    bad[0, 3, 1] = 0.0
    with pytest.raises(ObservationError, match=re.escape("noise std 0.0 (at index (0, 3, 1)) must be finite")):
        Observation("state", Identity(), np.zeros((1, 5, 2)), std=bad, name="o")


# ------------------------------------------------------------------------------------------ check_observations
def _obs(op, shape, modality="state", name="o"):
    return Observation(modality, op, np.zeros(shape, np.float32), name=name)


def test_check_observations_accepts_fitting_observations_of_every_modality():
    good = [_obs(TimeSubsample(2) >> Coarsen(4), (2, 4, 4, 2)), _obs(Identity(), SHAPES["precip"], "precip"),
            observe(jax.random.PRNGKey(0), _truth(), Channels((1,)), 0.1)]
    assert check_observations(good, SHAPES) is None


def test_check_observations_needs_observations():
    with pytest.raises(ObservationError, match="no observations given"):
        check_observations([], SHAPES)


def test_unknown_modality_names_the_observation_and_the_known_ones():
    with pytest.raises(ObservationError, match=re.escape("observation 'olr-1': unknown modality 'olr'; this model "
                                                         "observes ['precip', 'state']")):
        check_observations([_obs(Identity(), SHAPE, modality="olr", name="olr-1")], SHAPES)


def test_wrong_value_shape_names_both_shapes():
    op = TimeSubsample(2) >> Coarsen(4)
    with pytest.raises(ObservationError) as err:
        check_observations([_obs(op, (2, 4, 4, 1), name="coarse")], SHAPES)
    message = str(err.value)
    assert message.startswith("observation 'coarse': values have shape (2, 4, 4, 1)")
    assert f"{op!r} maps a state trajectory of shape {SHAPE} to (2, 4, 4, 2)" in message


def test_time_index_past_the_trajectory_names_observation_shape_and_index():
    with pytest.raises(ObservationError) as err:
        check_observations([_obs(Identity(), SHAPE), _obs(TimeIndex((1, 9)), (2, 16, 16, 2), name="late")], SHAPES)
    assert str(err.value) == (f"observation 'late' on a state trajectory of shape {SHAPE}: "
                              "TimeIndex(indices=(1, 9)): index 9 is past the trajectory of 4 states")


def test_operator_errors_for_the_modality_shape_are_observation_errors():
    # fits the 2-channel state, not the 1-channel precipitation: the modality's own shape is checked
    obs = _obs(Channels((1,)), (4, 16, 16, 1), modality="precip", name="rain")
    with pytest.raises(ObservationError, match=r"observation 'rain' on a precip trajectory of shape "
                                               r"\(4, 16, 16, 1\): .*channel 1 out of range for 1 channels"):
        check_observations([obs], SHAPES)
    with pytest.raises(ObservationError, match=r"observation 'pts'.*point 0 has latitude index 16, out of range"):
        check_observations([_obs(Points((16,), (0,)), (4, 1, 2), name="pts")], SHAPES)


def test_observation_errors_are_value_errors_and_slams_errors():
    assert issubclass(ObservationError, ValueError) and issubclass(ObservationError, Error)
    assert slams_jax.ObservationError is ObservationError
