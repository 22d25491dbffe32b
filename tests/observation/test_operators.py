"""Measurement operators: adjoints, exact values, validation, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import _field, jit

from slams_jax.observation.operators import (
    Channels,
    Coarsen,
    Compose,
    Identity,
    Points,
    Saturate,
    Stations,
    Swath,
    TimeIndex,
    TimeSubsample,
    random_points,
)

SHAPE = (5, 6, 7, 2)  # (time, lat, lon, channel)
GRID_LAT = tuple(np.linspace(75.0, -75.0, 6).tolist())  # descending, like ERA5
GRID_LON = tuple((np.arange(7) * 360.0 / 7).tolist())


def _stations():
    # the second station sits between the last and the first longitude column
    return Stations(lat=(10.0, -60.0, 75.0), lon=(100.0, 350.0, -20.0), grid_lat=GRID_LAT, grid_lon=GRID_LON)


LINEAR = {
    "identity": Identity(),
    "time_subsample": TimeSubsample(2, offset=1),
    "time_index": TimeIndex((4, 0, 2, 2)),
    "coarsen": Coarsen(2),
    "coarsen_rect_mean": Coarsen((4, 3), "mean"),  # 6 x 7 is divisible by neither
    "coarsen_rect_crop": Coarsen((4, 3), "crop"),
    "points": Points((0, 5, 3), (6, 0, 3)),
    "stations": _stations(),
    "swath": Swath(footprint=2, width=3, shift=2, offset=1),
    "channels": Channels((1, 0, 1)),
    "compose": TimeSubsample(2) >> Coarsen(2, "crop") >> Points((0, 2), (1, 2)) >> Channels((1,)) >> TimeIndex((2, 0)),
}


def _materialize(op, x, cotangent):
    """``op(x)``, the operator as a dense ``(out, in)`` matrix (forward mode at 0) and its VJP of ``cotangent``."""

    def run(x, cotangent):
        f = lambda v: op(v.reshape(x.shape)).reshape(-1)
        matrix = jax.jacfwd(f)(jnp.zeros(x.size, x.dtype))
        y, pullback = jax.vjp(op, x)
        return y, matrix, pullback(cotangent)[0]

    # one compiled function per operator: op-by-op dispatch would compile every primitive separately
    return [np.asarray(v, np.float64) for v in jit(run)(x, cotangent)]


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_operator_matches_its_matrix_and_adjoint(name):
    op = LINEAR[name]
    assert op.linear
    out_shape = op.check(SHAPE)
    assert out_shape[-1] <= 3 and len(out_shape) >= 3
    x, cotangent = _field(0, SHAPE), _field(1, out_shape)
    y, a, adjoint = _materialize(op, x, cotangent)
    assert y.shape == out_shape and adjoint.shape == SHAPE
    assert a.shape == (y.size, x.size)
    # every operator here selects, averages or interpolates: each output is a convex combination of inputs
    assert np.all(a >= 0.0)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-6)
    # linearity: op(x) == A x (not merely at 0)
    np.testing.assert_allclose(y.ravel(), a @ np.asarray(x, np.float64).ravel(), rtol=1e-5, atol=1e-5)
    # adjoint: the vector-Jacobian product is A^T
    np.testing.assert_allclose(adjoint.ravel(), a.T @ np.asarray(cotangent, np.float64).ravel(), rtol=1e-5, atol=1e-5)


def test_compose_flattens_and_is_linear_iff_all_are():
    a, b, c = TimeSubsample(2), Coarsen(2), Channels((0,))
    chain = (a >> b) >> (c >> Identity())
    assert isinstance(chain, Compose)
    assert chain.ops == (a, b, c, Identity())
    assert Compose((a, Compose((b, c)))) == a >> b >> c
    assert hash(Compose((a, b))) == hash(a >> b)
    assert chain.linear
    assert not (chain >> Saturate()).linear
    x = _field(2, SHAPE)
    np.testing.assert_allclose(chain(x), c(b(a(x))))
    # later steps see (time, n, channel) after Points
    after_points = Points((0, 1), (2, 3)) >> Channels((1,)) >> TimeSubsample(2) >> Saturate()
    assert after_points.check(SHAPE) == (3, 2, 1)


# ------------------------------------------------------------------------------------------------ Coarsen
def _grid(lat, lon):
    """(2, lat, lon, 2): time 1 is time 0 + 100, channel 1 is minus channel 0."""
    g = np.arange(lat * lon, dtype=np.float32).reshape(lat, lon)
    x = np.stack([g, g + 100.0])
    return jnp.asarray(np.stack([x, -x], axis=-1))


def _expect(values):
    v = np.asarray(values, np.float32)
    x = np.stack([v, v + 100.0])
    return np.stack([x, -x], axis=-1)


def test_coarsen_divisible():
    np.testing.assert_allclose(Coarsen(2)(_grid(4, 4)), _expect([[2.5, 4.5], [10.5, 12.5]]), rtol=1e-6)


def test_coarsen_not_divisible_mean_keeps_partial_blocks():
    expected = [[3.0, 5.0, 6.5], [13.0, 15.0, 16.5], [20.5, 22.5, 24.0]]
    np.testing.assert_allclose(Coarsen(2, "mean")(_grid(5, 5)), _expect(expected), rtol=1e-6)
    # rectangular factor: columns [0, 3), [3, 6), [6]
    np.testing.assert_allclose(Coarsen((2, 3))(_grid(2, 7)), _expect([[4.5, 7.5, 9.5]]), rtol=1e-6)


def test_coarsen_not_divisible_crop_drops_trailing_cells():
    np.testing.assert_allclose(Coarsen(2, "crop")(_grid(5, 5)), _expect([[3.0, 5.0], [13.0, 15.0]]), rtol=1e-6)
    np.testing.assert_allclose(Coarsen((2, 3), "crop")(_grid(2, 7)), _expect([[4.5, 7.5]]), rtol=1e-6)
    assert Coarsen((2, 3), "crop").check((2, 5, 7, 2)) == (2, 2, 2, 2)
    assert Coarsen((2, 3), "mean").check((2, 5, 7, 2)) == (2, 3, 3, 2)


# ----------------------------------------------------------------------------------------------- Stations
LON12 = tuple(float(v) for v in np.arange(12) * 30.0)  # 0, 30, ..., 330


@pytest.mark.parametrize("descending", [True, False])
def test_stations_exact_on_field_linear_in_lat(descending):
    grid_lat = np.linspace(90.0, -90.0, 7) if descending else np.linspace(-90.0, 90.0, 7)
    lat = np.array([-90.0, -71.3, 0.0, 12.5, 89.9, 90.0])
    lon = np.array([0.0, 359.0, 17.0, -400.0, 180.0, 15.0])
    op = Stations(lat=lat, lon=lon, grid_lat=grid_lat, grid_lon=LON12)
    t, c = np.arange(3).reshape(3, 1, 1, 1), np.arange(2).reshape(1, 1, 1, 2)
    x = (c + 1.0) * grid_lat.reshape(1, 7, 1, 1) + 2.0 * t + np.zeros((3, 7, 12, 2))
    y = op(jnp.asarray(x, jnp.float32))
    expected = (np.arange(2) + 1.0).reshape(1, 1, 2) * lat.reshape(1, 6, 1) + 2.0 * np.arange(3).reshape(3, 1, 1)
    assert y.shape == (3, 6, 2)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_stations_exact_on_field_linear_in_lon():
    grid_lat = np.linspace(60.0, -60.0, 5)
    lon = np.array([0.0, 17.25, 200.0, 329.9, 45.0 - 360.0, 100.0 + 720.0])
    op = Stations(lat=np.full(6, 13.0), lon=lon, grid_lat=grid_lat, grid_lon=LON12)
    c = np.arange(2).reshape(1, 1, 1, 2)
    x = 0.5 * np.asarray(LON12).reshape(1, 1, 12, 1) + 3.0 * c + np.zeros((2, 5, 12, 2))
    y = op(jnp.asarray(x, jnp.float32))
    reduced = np.mod(lon, 360.0)
    expected = 0.5 * reduced.reshape(1, 6, 1) + 3.0 * np.arange(2).reshape(1, 1, 2) + np.zeros((2, 6, 2))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_stations_interpolate_across_the_longitude_seam():
    grid_lat = np.linspace(90.0, -90.0, 7)  # 30 degree rows: 90, 60, 30, 0, ...
    x = _field(3, (2, 7, 12, 2))
    # halfway between column 11 (330) and column 0 (360); the same station written three ways
    op = Stations(lat=(30.0, 30.0, 30.0), lon=(345.0, -15.0, 705.0), grid_lat=grid_lat, grid_lon=LON12)
    y = jit(op)(x)
    for k in range(3):
        np.testing.assert_allclose(y[:, k], 0.5 * (x[:, 2, 11] + x[:, 2, 0]), rtol=1e-5, atol=1e-6)
    # a quarter of the way from row 2 (30) to row 3 (0), a third of the way from column 11 to column 0
    op = Stations(lat=(22.5,), lon=(340.0,), grid_lat=grid_lat, grid_lon=LON12)
    y = jit(op)(x)
    a, b = 0.25, 1.0 / 3.0
    expected = ((1 - a) * (1 - b) * x[:, 2, 11] + (1 - a) * b * x[:, 2, 0]
                + a * (1 - b) * x[:, 3, 11] + a * b * x[:, 3, 0])
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_stations_at_grid_nodes_return_node_values():
    grid_lat = np.linspace(90.0, -90.0, 7)
    x = _field(4, (2, 7, 12, 3))
    op = Stations(lat=(30.0, -90.0, 90.0), lon=(150.0, 330.0, 0.0), grid_lat=grid_lat, grid_lon=LON12)
    y = jit(op)(x)
    np.testing.assert_allclose(y[:, 0], x[:, 2, 5], rtol=1e-6)
    np.testing.assert_allclose(y[:, 1], x[:, 6, 11], rtol=1e-6)
    np.testing.assert_allclose(y[:, 2], x[:, 0, 0], rtol=1e-6)


def test_stations_refuse_latitudes_beyond_the_grid():
    grid_lat = np.linspace(60.0, -60.0, 5)
    with pytest.raises(ValueError, match=r"1 of 2 stations lie outside the grid \(latitude range \[-60\.0, 60\.0\], "
                       r"longitudes periodic.*\): station 1 at latitude 75\.0, longitude 0\.0$"):
        Stations(lat=(0.0, 75.0), lon=(0.0, 0.0), grid_lat=grid_lat, grid_lon=LON12)
    with pytest.raises(ValueError, match="2 latitudes but 1 longitudes"):
        Stations(lat=(0.0, 10.0), lon=(0.0,), grid_lat=grid_lat, grid_lon=LON12)
    with pytest.raises(ValueError, match=r"grid_lon: expected strictly ascending or strictly descending longitudes"):
        Stations(lat=(0.0,), lon=(0.0,), grid_lat=grid_lat, grid_lon=(0.0, 10.0, 5.0))
    with pytest.raises(ValueError, match=r"grid_lon: the longitudes span 360 >= 360"):
        Stations(lat=(0.0,), lon=(0.0,), grid_lat=grid_lat, grid_lon=np.arange(13) * 30.0)


def test_stations_repr_stays_short_on_large_grids():
    op = Stations(lat=(0.0,), lon=(0.0,), grid_lat=np.linspace(90, -90, 721), grid_lon=np.arange(1440) * 0.25)
    assert len(repr(op)) < 300 and "1440 values" in repr(op)


# ------------------------------------------------------------------------------------------ random_points
def test_random_points():
    key = jax.random.key(0)
    points = random_points(key, (6, 7), 0.3)
    cells = list(zip(points.lat_index, points.lon_index))
    assert points.n_points == len(cells) == round(0.3 * 42) == 13
    assert len(set(cells)) == len(cells)
    flat = [i * 7 + j for i, j in cells]
    assert flat == sorted(flat) and all(0 <= i < 6 and 0 <= j < 7 for i, j in cells)
    assert all(type(i) is int for i in points.lat_index + points.lon_index)
    assert random_points(jax.random.key(0), (6, 7), 0.3) == points
    assert random_points(jax.random.key(1), (6, 7), 0.3) != points
    assert random_points(jax.random.PRNGKey(0), (6, 7), 0.3).n_points == 13  # raw uint32 keys too
    assert random_points(key, (6, 7), 1e-6).n_points == 1
    full = random_points(key, (6, 7), 1.0)
    assert list(zip(full.lat_index, full.lon_index)) == [(i, j) for i in range(6) for j in range(7)]
    for density in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"density=.*\(0, 1\]"):
            random_points(key, (6, 7), density)


# ------------------------------------------------------------------------------------------------- Swath
def test_swath_columns_move_with_time():
    # the field's value is its longitude index, so a coarse cell holds 2 * column + 0.5
    x = jnp.asarray(np.broadcast_to(np.arange(8, dtype=np.float32).reshape(1, 1, 8, 1), (5, 6, 8, 2)))
    y = jit(Swath(footprint=2, width=2, shift=1, offset=3))(x)
    assert y.shape == (5, 3, 2, 2)
    seen = np.round((np.asarray(y[:, 0, :, 0]) - 0.5) / 2).astype(int)
    np.testing.assert_array_equal(seen, [[3, 0], [0, 1], [1, 2], [2, 3], [3, 0]])
    # default shift = width: adjacent swaths
    seen = np.round((np.asarray(jit(Swath(2, 2))(x)[:, 0, :, 0]) - 0.5) / 2).astype(int)
    np.testing.assert_array_equal(seen, [[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]])


def test_swath_equals_footprint_average_at_the_seen_columns():
    x = _field(5, (4, 6, 9, 2))
    op = Swath(footprint=2, width=3, shift=-2, offset=1)
    coarse = np.asarray(jit(Coarsen(2, "mean"))(x))  # (4, 3, 5, 2)
    y = np.asarray(jit(op)(x))
    for i in range(4):
        cols = [(1 - 2 * i + j) % 5 for j in range(3)]
        np.testing.assert_allclose(y[i], coarse[i][:, cols], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- Saturate
def test_saturate():
    op = Saturate(scale=2.0)
    assert not op.linear
    x = _field(6, (3, 4, 5, 2))
    big = op(100.0 * x)
    assert float(jnp.max(jnp.abs(big))) <= 2.0
    np.testing.assert_allclose(big, 2.0 * np.tanh(50.0 * np.asarray(x, np.float64)), rtol=1e-6)
    small = 1e-3 * x
    np.testing.assert_allclose(op(small), small, rtol=1e-6, atol=1e-9)
    # nonlinear: op(2x) != 2 op(x)
    assert not np.allclose(op(2.0 * x), 2.0 * op(x), rtol=1e-3)
    with pytest.raises(ValueError, match="scale"):
        Saturate(0.0)


# ------------------------------------------------------------------------------------------------- errors
def test_errors_name_the_operator_and_the_problem():
    with pytest.raises(ValueError, match=r"TimeIndex\(indices=\(0, 12\)\): index 12 is past the trajectory of 8 states"):
        TimeIndex((0, 12)).check((8, 4, 4, 1))
    with pytest.raises(ValueError, match="negative index -1"):
        TimeIndex((0, -1))
    with pytest.raises(ValueError, match=r"TimeSubsample\(every=2, offset=8\): offset 8 is past"):
        TimeSubsample(2, offset=8).check((8, 4, 4, 1))
    with pytest.raises(ValueError, match=r"Channels\(indices=\(0, 3\)\): channel 3 out of range for 2 channels"):
        Channels((0, 3)).check((4, 5, 2))
    for op in (Coarsen(2), Points((0,), (0,)), _stations(), Swath(1, 1)):
        with pytest.raises(ValueError, match=r"expected a trajectory \(time, lat, lon, channel\), got shape \(4, 5\)"):
            op.check((4, 5))
    with pytest.raises(ValueError, match=r"Coarsen\(factor=2, remainder='mean'\): expected a trajectory .* \(5, 2, 2\)"):
        (Points((0, 1), (2, 3)) >> Coarsen(2)).check(SHAPE)
    with pytest.raises(ValueError, match=r"Stations\(.*\): built for a 6 x 7 \(lat x lon\) grid, got a 6 x 8 grid"):
        _stations().check((5, 6, 8, 2))
    with pytest.raises(ValueError, match="point 1 has longitude index 7, out of range for 7 longitudes"):
        Points((0, 1), (0, 7)).check(SHAPE)
    with pytest.raises(ValueError, match="width 5 exceeds the 4 coarse longitude columns"):
        Swath(2, 5).check(SHAPE)
    with pytest.raises(ValueError, match="cropping leaves no cell"):
        Coarsen(8, "crop").check(SHAPE)
    # calling runs the same checks at trace time, so nothing clamps silently under jit
    with pytest.raises(ValueError, match="index 5 is past the trajectory of 5 states"):
        jax.jit(TimeIndex((5,)))(_field(7, SHAPE))


# ------------------------------------------------------------------------------------------- jit and vmap
def test_compose_under_jit_and_vmap_matches_a_loop():
    op = (TimeSubsample(2, offset=1) >> Coarsen(2) >> Points((0, 2, 1), (3, 0, 1)) >> Channels((1, 0))
          >> Saturate(3.0))
    batch = _field(8, (3,) + SHAPE)
    y = jax.jit(jax.vmap(op))(batch)
    assert y.shape == (3,) + op.check(SHAPE) == (3, 2, 3, 2)
    np.testing.assert_allclose(y, np.stack([jit(op)(b) for b in batch]), rtol=1e-6, atol=1e-6)
    swath = Swath(2, 2, shift=1) >> Channels((1,))
    np.testing.assert_allclose(jax.jit(jax.vmap(swath))(batch), np.stack([jit(swath)(b) for b in batch]), rtol=1e-6)
