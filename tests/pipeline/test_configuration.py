"""Configs become typed settings; unknown keys and bad values are named in the error."""

import subprocess
import sys

import jax
import pytest
from ml_collections import config_flags
from absl import flags

from helpers import ROOT, load_config
from slams_jax.pipeline.configuration import ConfigError, settings_from_config, settings_from_dict, settings_to_dict
from slams_jax.pipeline.models import build_autoencoder


@pytest.mark.parametrize("name", ["kolmogorov", "era5"])
def test_configs_convert_and_roundtrip(name):
    s = settings_from_config(load_config(name))
    assert settings_from_dict(settings_to_dict(s)) == s
    assert s.train["score"].batch_size > 0 and s.train["autoencoder"].steps > 0


def test_era5_config_matches_the_paper():
    s = settings_from_config(load_config("era5"))
    assert len(s.data.state.variables) == 10
    assert [m.name for m in s.data.modalities] == ["state", "precip", "olr"]
    assert s.score.window == 5 and s.score.hidden_channels == (32, 64, 128) and s.score.hidden_blocks == (3, 3, 3)
    assert s.autoencoder.hidden_channels + (s.autoencoder.latent_channels,) == (9, 8, 7, 6, 5)
    assert s.autoencoder.kernel_size == 5 and s.autoencoder.downsample == 1
    assert s.train["score"].learning_rate == 2e-4 and s.train["score"].batch_size == 64
    assert s.score.padding[0] != "circular", "latitude must not wrap"


def test_stage_overrides_inherit_shared_values():
    c = load_config()
    c.train.score.learning_rate = 5e-4
    s = settings_from_config(c)
    assert s.train["score"].learning_rate == 5e-4
    assert s.train["autoencoder"].learning_rate == c.train.learning_rate
    assert s.train["autoencoder"].steps == c.train.autoencoder.steps
    assert s.train["score"].steps == c.train.steps


def test_unknown_and_bad_keys_are_named():
    c = load_config().to_dict()
    c["autoencoder"]["latent_chanels"] = 4
    with pytest.raises(ConfigError, match="autoencoder.*latent_chanels"):
        settings_from_config(c)
    c = load_config().to_dict()
    c["autoencoder"]["norm"] = "layer"
    with pytest.raises(ConfigError, match="autoencoder.norm"):
        settings_from_config(c)
    c = load_config().to_dict()
    c["train"]["steps"] = "many"
    with pytest.raises(ConfigError, match="train.steps"):
        settings_from_config(c)
    c = load_config().to_dict()
    c["stages"] = ("autoencoder", "scor")
    with pytest.raises(ValueError, match="scor"):
        settings_from_config(c)


def test_command_line_override_reaches_the_model():
    fv = flags.FlagValues()
    argv = ["prog", "--config.autoencoder.latent_channels=3", "--config.autoencoder.downsample=2"]
    config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "kolmogorov.py"), flag_values=fv,
                                    lock_config=True, sys_argv=argv)
    fv(argv)
    s = settings_from_config(fv.config)
    model = build_autoencoder(s)
    n = s.data.kolmogorov.out_grid
    values = {"state": jax.numpy.zeros((1, n, n, 2)), "precip": jax.numpy.zeros((1, n, n, 1)),
              "olr": jax.numpy.zeros((1, n, n, 1))}
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), values))
    z = jax.eval_shape(lambda v: model.apply(v, values, method="encode"), variables)
    assert z.shape == (1, n // 2, n // 2, 3)


@pytest.mark.slow
def test_cli_names_an_unknown_key(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "slams_jax.train", f"--workdir={tmp_path}", "--config.train.bogus=1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode != 0
    assert "train.bogus" in out.stderr and "valid keys" in out.stderr, out.stderr[-2000:]


def test_era5_without_path_says_so(tmp_path):
    from slams_jax.pipeline.training import train_and_evaluate

    with pytest.raises(FileNotFoundError, match="config.data.path is empty"):
        train_and_evaluate(load_config("era5"), tmp_path)
