"""Configs: JSON round trip, validation messages, overrides, property-based checks."""

import contextlib
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaekit.config import SECTIONS, ConfigError, ModelConfig, RunConfig, TrainConfig, all_keys


def test_defaults_are_the_papers_mnist_model():
    c = RunConfig()
    assert (c.model.hidden_dim, c.model.latent_dim, c.model.image_shape) == (512, 16, (1, 28, 28))
    assert (c.train.batch_size, c.train.num_samples, c.model.likelihood) == (100, 1, "bernoulli")


def test_json_round_trip_is_exact():
    c = RunConfig().with_overrides(
        {
            "model.latent_dim": "32",
            "train.learning_rate": "3e-4",
            "data.binarization": "static",
            "data.path": "x",
            "model.image_shape": "1,28,28",
        }
    )
    assert RunConfig.from_json(c.to_json()) == c
    assert c.model.latent_dim == 32 and c.train.learning_rate == 3e-4 and c.data.path == "x"


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        RunConfig.from_dict({"model": {"latnt_dim": 3}})
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        RunConfig.from_dict({"trian": {}})
    with pytest.raises(ConfigError, match="did you mean 'model.latent_dim'"):
        RunConfig().with_overrides({"modle.latent_dim": "3"})


@pytest.mark.parametrize(
    "section,key,value,fragment",
    [
        ("model", "latent_dim", 0, "model.latent_dim = 0"),
        ("model", "likelihood", "poisson", "choose one of bernoulli, continuous-bernoulli, gaussian"),
        ("model", "image_shape", [1, 28], "image_shape"),
        ("train", "batch_size", -1, "train.batch_size = -1"),
        ("train", "learning_rate", float("nan"), "learning_rate"),
        ("train", "epochs", "ten", "wrong type"),
        ("train", "seed", True, "wrong type"),
        ("data", "source", "folder", "needs the folder"),
    ],
)
def test_bad_values_name_the_key(section, key, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        RunConfig.from_dict({section: {key: value}})


def test_unreadable_config_file_is_named(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="c.json is not valid JSON"):
        RunConfig.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.json")


def test_field_names_are_unique_across_sections_so_flags_are_unambiguous():
    names = [f.name for k in SECTIONS.values() for f in dataclasses.fields(k)]
    assert len(names) == len(set(names))
    assert all(f.metadata.get("help") for k in SECTIONS.values() for f in dataclasses.fields(k))


@settings(max_examples=150, deadline=None)
@given(
    key=st.sampled_from(all_keys()),
    value=st.one_of(
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        st.none(),
        st.booleans(),
        st.lists(st.integers(-5, 5), max_size=4),
    ),
)
def test_any_value_either_validates_or_raises_config_error(key, value):
    section, name = key.split(".")
    try:
        c = RunConfig.from_dict({section: {name: value}})
    except ConfigError as err:
        assert key.split(".")[1] in str(err) or section in str(err)
    else:
        assert RunConfig.from_json(c.to_json()) == c
        json.loads(c.to_json())


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(all_keys()), text=st.text(max_size=10))
def test_any_override_string_either_parses_or_raises_config_error(key, text):
    with contextlib.suppress(ConfigError):
        RunConfig().with_overrides({key: text})


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().latent_dim = 3  # type: ignore[misc]
    assert TrainConfig(epochs=2).epochs == 2


def test_conv_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 8"):
        ModelConfig(architecture="conv", image_shape=(3, 30, 30), conv_channels=(8, 8, 8))


def test_iwae_objective_with_beta_is_rejected():
    with pytest.raises(ValueError, match="iwae has no beta"):
        TrainConfig(objective="iwae", beta=2.0)
    with pytest.raises(ValueError, match="iwae takes no capacity or free bits"):
        TrainConfig(objective="iwae", capacity_max=5.0)


@pytest.mark.parametrize(
    "model,train,fragment",
    [
        ({"prior": "vampprior"}, {"free_bits": 0.5}, "free bits need the per-dimension KL of a standard prior"),
        ({"posterior_flow": "iaf"}, {"gradient_estimator": "stl"}, "stl and dreg need a one-layer posterior without"),
        ({"hierarchy": "two-layer", "prior": "vampprior"}, {}, "the VampPrior on a top layer needs the ladder"),
        ({"hierarchy": "ladder", "architecture": "conv"}, {}, "the ladder is built of MLPs"),
        ({"ladder_latent_dims": (8,)}, {}, "give 2 to 16 layer sizes"),
        ({}, {"gradient_estimator": "dreg"}, "elbo takes reparameterization or stl"),
        ({"prior": "gaussian-mixture"}, {}, "model.prior = 'gaussian-mixture' is invalid: choose one of standard"),
        ({"flow_steps": 0}, {}, "model.flow_steps = 0 is invalid: use 1 to 64"),
    ],
)
def test_options_that_need_a_closed_form_or_another_objective_are_refused_by_name(model, train, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(ModelConfig(**model), train=TrainConfig(**train))


def test_configs_written_before_priors_and_flows_existed_still_load():
    old = {"model": {"latent_dim": 8}, "data": {}, "train": {"epochs": 3}}  # no prior, flow or estimator keys
    config = RunConfig.from_dict(old)
    assert (config.model.prior, config.model.posterior_flow, config.train.gradient_estimator) == (
        "standard",
        "none",
        "reparameterization",
    )


@pytest.mark.parametrize(
    "model,data,train,fragment",
    [
        (
            {"likelihood": "gaussian"},
            {},
            {},
            "model.likelihood = 'gaussian' is invalid: gaussian is a density for grey",
        ),
        ({"likelihood": "gaussian"}, {"binarization": "static"}, {}, "use it with --binarization none, or bernoulli"),
        ({"likelihood": "categorical"}, {}, {}, "categorical models grey levels, not binary pixels"),
        ({}, {"bits": 5}, {}, "data.bits = 5 is invalid: fewer levels apply to grey levels kept as they are"),
        ({}, {"bits": 1, "binarization": "static"}, {}, "use it with --binarization none, or leave bits at 8"),
        ({}, {}, {"objective": "beta-tcvae", "batch_size": 1}, "train.batch_size = 1 is invalid: beta-tcvae"),
        ({}, {}, {"objective": "factor-vae", "batch_size": 1}, "train.batch_size = 1 is invalid: factor-vae permutes"),
        ({}, {}, {"objective": "dip-vae-i", "batch_size": 1}, "train.batch_size = 1 is invalid: dip-vae-i penalises"),
        ({}, {}, {"objective": "dip-vae-ii", "batch_size": 1}, "train.batch_size = 1 is invalid: dip-vae-ii"),
    ],
)
def test_settings_that_would_do_nothing_are_refused_in_one_sentence(model, data, train, fragment):
    """A Gaussian's learned variance and fewer grey levels mean nothing on binarized pixels, and beta-TCVAE's
    estimate of the total correlation needs two images in a batch; each is one sentence naming the key."""
    raw = {"model": model, "data": data, "train": train}
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as refused:
        RunConfig.from_dict(raw)
    assert str(refused.value).count(". ") == 0 and str(refused.value).endswith(".")  # one sentence
    grey = {"model": model, "data": {**data, "binarization": "none"}, "train": {**train, "batch_size": 2}}
    RunConfig.from_dict(grey)  # the same settings where they do something are accepted
