"""Models of labels: the conditional VAE and Kingma et al. 2014's M2 (and M1 + M2 on a VAE's features).

The bounds are checked against direct computations (U(x) summed by hand over the labels, its one-hot limit), the
importance-sampled log p(x) with y summed out against a linear-Gaussian model with a discrete label whose marginal
is exact, the samples against the decoder at the asked label, and the labelled subset against its protocol."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from vaekit import rundir
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import Dataset, Split, hide_labels, labelled_subset, load_dataset
from vaekit.errors import ConfigError, DataError
from vaekit.evaluation import evaluate_elbo, importance_sampled_log_likelihood
from vaekit.likelihoods import LIKELIHOOD_BUILDERS, LikelihoodOptions
from vaekit.models.posteriors import LabelledInference
from vaekit.models.priors import LabelledPrior
from vaekit.models.vae import VAE, build_model
from vaekit.objectives import build_objective
from vaekit.objectives.bounds import elbo_at
from vaekit.objectives.labelled import classification_log_prob, labelled_bound, unlabelled_bound

CLASSES, J = 4, 3


def small_model(family: str = "m2", architecture: str = "mlp") -> VAE:
    torch.manual_seed(0)
    config = ModelConfig(
        family=family, architecture=architecture, image_shape=(1, 8, 8), hidden_dim=16, latent_dim=J, classes=CLASSES,
        activation="softplus", conv_channels=(4, 8),
    )  # fmt: skip
    return build_model(config).double()


def binary_images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).bernoulli()


def _noise(rows: int, seed: int) -> torch.Tensor:
    """What unlabelled_bound draws from a generator of this seed: one eps (rows, 1, C + J)."""
    return torch.randn((rows, 1, CLASSES + J), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_the_unlabelled_bound_is_the_sum_over_labels_of_q_y_times_the_labelled_bound_plus_the_entropy(architecture):
    """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) (Kingma et al. 2014, Eq. 7), each L(x, y) computed on its own at the
    same z as the batched sum draws, with log p(y) = -log C in it."""
    model, x = small_model("m2", architecture), binary_images(5)
    posterior = model.posterior(x)
    u = unlabelled_bound(model, x, posterior, torch.Generator().manual_seed(3))
    eps = _noise(CLASSES * len(x), 3)
    q = posterior.label_log_probs.exp()
    by_hand = -(q * q.log()).sum(-1)  # H(q(y|x))
    for y in range(CLASSES):
        labels = torch.full((len(x),), y)
        rows = slice(y * len(x), (y + 1) * len(x))
        labelled = labelled_bound(model, x, labels, eps=eps[rows])
        terms = elbo_at(model, x, model.posterior(x, labels), 1, eps=eps[rows])  # the same, computed again
        torch.testing.assert_close(labelled.elbo, terms.elbo)
        by_hand = by_hand + q[:, y] * labelled.elbo
    torch.testing.assert_close(u.elbo, by_hand)
    assert (u.kl >= 0).all()  # KL(q(y|x) q(z|x,y) || p(y) p(z))


def test_the_labelled_bound_holds_log_p_y_and_the_gaussian_kl_of_its_label():
    """L(x, y) = E log p(x|y, z) + log p(y) - KL(q(z|x, y) || N(0, I)): its KL is -log p(y) = log C plus Appendix
    B's KL of the Gaussian at that label; a cvae's has no log p(y) (its bound is on log p(x|y))."""
    for family, log_p_y in (("m2", -math.log(CLASSES)), ("cvae", 0.0)):
        model, x = small_model(family), binary_images(3)
        labels = torch.tensor([0, 2, 3])
        terms = elbo_at(model, x, model.posterior(x, labels), 1, eps=_noise(3, 0))
        _, mu, logvar = model.encoder(x)
        mu, logvar = mu[torch.arange(3), labels], logvar[torch.arange(3), labels]
        gaussian_kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
        torch.testing.assert_close(terms.kl, gaussian_kl - log_p_y)


def test_with_q_y_one_hot_on_the_true_label_the_unlabelled_bound_is_the_labelled_bound():
    model, x = small_model(), binary_images(4)
    labels = torch.full((4,), 2)
    sure = model.posterior(x).given(labels)  # q(y|x) all on label 2
    u = unlabelled_bound(model, x, sure, torch.Generator().manual_seed(5))
    labelled = labelled_bound(model, x, labels, eps=_noise(CLASSES * 4, 5)[2 * 4 : 3 * 4])
    torch.testing.assert_close(u.elbo, labelled.elbo)


def test_the_m2_loss_weighs_the_bounds_by_their_images_and_adds_alpha_log_q():
    """-[(N_u mean U + N_l mean L) / (N_u + N_l) + a mean_l log q(y|x)] with a = classification_weight, from the
    objective's own generator (seed, "labels", step) and the same terms computed directly."""
    from vaekit.randomness import derive_seed

    model, x = small_model(), binary_images(6)
    labels = torch.tensor([-1, -1, -1, 1, 3, -1])
    train = TrainConfig(objective="m2", classification_weight=0.3, seed=7)
    objective = build_objective(model, train, dataset_size=50, labelled_size=10)
    from vaekit.batch import Batch

    loss, terms = objective(Batch(x, labels), step=4)
    generator = torch.Generator().manual_seed(derive_seed(7, "labels", 4))
    known = labels >= 0
    u = unlabelled_bound(model, x[~known], model.posterior(x[~known]), generator)
    posterior = model.posterior(x[known])
    lab = labelled_bound(model, x[known], labels[known], generator, posterior=posterior)
    log_q = classification_log_prob(posterior, labels[known])
    expected = -((40 * u.elbo.mean() + 10 * lab.elbo.mean()) / 50 + 0.3 * log_q.mean())
    torch.testing.assert_close(loss, expected)
    assert len(terms.elbo) == 6
    loss.backward()  # the classifier learns from the classification term and from U(x)'s q(y|x)
    assert model.encoder.classifier.heads.weight.grad.abs().sum() > 0


class LinearGaussian(nn.Module):
    """p(x|y, z) = N(W z + m_y, s^2 I) over x in R^3 (an image (1, 1, 3)), z in R^2, y one of CLASSES: as a decoder
    of v = [onehot(y), z], and the exact posterior p(y|x) p(z|x, y) as an encoder (W has orthogonal columns, so
    that p(z|x, y) is a diagonal Gaussian). p(x) = (1/C) sum_y N(x; m_y, W W^T + s^2 I) is exact."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.W = torch.tensor([[1.5, 0.0], [0.0, 0.7], [0.0, 0.0]], dtype=torch.float64)
        self.means = torch.tensor([[2.0, -1.0, 0.5], [-2.0, 1.0, 0.0], [0.0, 2.0, -1.0], [1.0, 1.0, 1.0]]).double()
        self.s, self.shift = 0.6, shift
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # a device for the evaluator

    def decode(self, v: torch.Tensor):
        onehot, z = v[:, :CLASSES], v[:, CLASSES:]
        mean = z @ self.W.T + onehot @ self.means
        build = LIKELIHOOD_BUILDERS["gaussian-fixed"][1]
        return build(mean.view(-1, 1, 1, 3), 3, LikelihoodOptions(fixed_std=self.s))

    def marginal(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s**2 * torch.eye(3, dtype=torch.float64)
        per_label = torch.stack(
            [torch.distributions.MultivariateNormal(m, cov).log_prob(x.view(-1, 3)) for m in self.means], -1
        )
        return torch.logsumexp(per_label, -1) - math.log(CLASSES), per_label

    def encode(self, x: torch.Tensor):
        """Exact p(y|x) logits and p(z|x, y) at every label, z's mean moved by `shift` (an imperfect q)."""
        precision = torch.eye(2, dtype=torch.float64) + self.W.T @ self.W / self.s**2  # diagonal
        var = 1 / precision.diagonal()
        residual = x.view(-1, 1, 3) - self.means  # (B, C, 3)
        mu = (residual @ self.W) / self.s**2 * var + self.shift
        return self.marginal(x)[1], mu, var.log().expand_as(mu)


def linear_gaussian_model(family: str = "m2", shift: float = 0.0) -> VAE:
    oracle = LinearGaussian(shift)
    encoder, decoder = _Call(oracle.encode, oracle), _Call(oracle.decode, oracle)
    prior = LabelledPrior(CLASSES, 2, given=family == "cvae")
    return VAE(encoder, decoder, prior, LabelledInference(family == "cvae"), (1, 1, 3), family), oracle


class _Call(nn.Module):
    def __init__(self, function, owner: nn.Module) -> None:
        super().__init__()
        self.function, self.owner = function, owner

    def forward(self, value):
        return self.function(value)


def test_log_p_x_with_y_summed_out_is_exact_under_the_exact_posterior_and_a_bound_under_another():
    """With q(y|x) q(z|x, y) the exact posterior every importance weight is p(x): the estimate equals, and the
    ELBO's expectation is, the closed-form log p(x) = log (1/C) sum_y N(x; m_y, W W^T + s^2 I). With z's means
    moved, the ELBO falls below the K-sample estimate, which stays below log p(x) (up to its noise) and close to
    it."""
    model, oracle = linear_gaussian_model()
    x = torch.randn(40, 1, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    exact = oracle.marginal(x)[0]
    ll = importance_sampled_log_likelihood(model, x, 50, compile="off")
    torch.testing.assert_close(ll.per_datapoint, exact, atol=1e-6, rtol=0)
    # the ELBO's estimator (a sampled y and z, the KL in closed form) is unbiased: L = 4000 draws per image
    elbo = evaluate_elbo(model, x, num_samples=4000, per_image=True, generator=torch.Generator().manual_seed(1))
    difference = elbo.per_image - exact
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(x)) and difference.abs().max() < 0.2

    model, _ = linear_gaussian_model(shift=0.4)
    ll = importance_sampled_log_likelihood(model, x, 4000, compile="off")
    elbo = evaluate_elbo(model, x, per_image=True, generator=torch.Generator().manual_seed(1))
    gap = exact - ll.per_datapoint
    assert elbo.elbo < ll.mean - 0.05
    assert gap.mean() > -3 * gap.std() / math.sqrt(len(x)) and gap.mean() < 0.01


def test_the_conditional_bound_and_log_p_x_given_y_are_exact_under_the_exact_posterior_at_the_labels():
    """A cvae's figures are on log p(x|y) = log N(x; m_y, W W^T + s^2 I), at the labels passed; without them it
    refuses in one sentence."""
    model, oracle = linear_gaussian_model("cvae")
    x = torch.randn(30, 1, 1, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.arange(30) % CLASSES
    exact = oracle.marginal(x)[1][torch.arange(30), labels]
    ll = importance_sampled_log_likelihood(model, x, 20, compile="off", labels=labels)
    torch.testing.assert_close(ll.per_datapoint, exact, atol=1e-6, rtol=0)
    generator = torch.Generator().manual_seed(1)
    elbo = evaluate_elbo(model, x, num_samples=4000, per_image=True, labels=labels, generator=generator)
    difference = elbo.per_image - exact
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(x)) and difference.abs().max() < 0.2
    with pytest.raises(DataError, match="needs the labels"):
        evaluate_elbo(model, x)


def test_samples_at_a_label_are_the_decoder_at_that_label():
    """model.sample(n, labels=y) decodes [onehot(y), z] with z the prior's draws: it fails if the label were
    ignored or moved by one; the classes picture's rows are its labels."""
    model = small_model("cvae").float()
    draws = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    z = model.prior.split(model.sample_prior(6, draws()))[1]
    for y in range(CLASSES):
        labels = (torch.arange(6) + y) % CLASSES  # mixed labels: each row's own
        images = model.sample(6, draws(), labels=labels)
        torch.testing.assert_close(images, model.decode(model.prior.join(labels, z)).mean)
        other = model.decode(model.prior.join((labels + 1) % CLASSES, z)).mean
        assert (images - other).abs().max() > 1e-6
    with pytest.raises(DataError, match="integers in 0 .. 3"):
        model.sample(2, labels=torch.tensor([0, 4]))


def test_the_labelled_subset_is_balanced_reproducible_and_disjoint_from_the_validation_images(tmp_path):
    """data.labelled = 30 of an array file's 3 classes: 10 of each, the same under the same split seed and other
    rows under another, all among the training images; the others' labels are hidden (-1)."""
    n = 250  # distinct uint8 images
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(4, 2).repeat(4, 3)  # image i's pixels are i
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(n) % 3)
    config = DataConfig(dataset="array", path=str(tmp_path / "a.npz"), binarization="none", labelled=30)
    data = load_dataset(config, (1, 4, 4))
    known = data.train.labels >= 0
    assert int(known.sum()) == 30
    assert torch.bincount(data.train.labels[known]).tolist() == [10, 10, 10]
    ids = lambda split: set((split.images[:, 0, 0, 0] * 255).round().int().tolist())  # noqa: E731
    labelled_ids = set((data.train.images[known][:, 0, 0, 0] * 255).round().int().tolist())
    assert labelled_ids.isdisjoint(ids(data.valid)) and labelled_ids.isdisjoint(ids(data.test))
    again = load_dataset(config, (1, 4, 4))
    assert torch.equal(again.train.labels, data.train.labels)
    other = load_dataset(dataclasses.replace(config, split_seed=1), (1, 4, 4))
    assert not torch.equal(labelled_subset(other.train.labels.clamp_min(0), 30, 0), labelled_subset(
        other.train.labels.clamp_min(0), 30, 1))  # fmt: skip
    with pytest.raises(DataError, match="asks for 100 labelled images of class"):
        hide_labels(torch.arange(30) % 3, 300, 0)


def test_the_config_refuses_labels_where_they_do_not_apply():
    with pytest.raises(ConfigError, match="labels are hidden only from m2"):
        RunConfig(ModelConfig(family="cvae"), DataConfig(labelled=100), TrainConfig(objective="cvae"))
    with pytest.raises(ConfigError, match="multiple of 10"):
        RunConfig(ModelConfig(family="m2"), DataConfig(labelled=105), TrainConfig(objective="m2"))
    with pytest.raises(ConfigError, match="use mlp or conv"):
        ModelConfig(family="m2", architecture="resnet", latent_dim=49)
    with pytest.raises(ConfigError, match="classification_weight"):
        TrainConfig(classification_weight=0.5)
    with pytest.raises(ConfigError, match="trains the m2 family"):
        RunConfig(ModelConfig(family="vae"), DataConfig(), TrainConfig(objective="m2"))


def _hidden(data: Dataset, labelled: int) -> Dataset:
    train = Split(data.train.images, hide_labels(data.train.labels, labelled, 0))
    return dataclasses.replace(data, train=train)


def test_m2_learns_to_classify_real_mnist_from_100_labels_and_resumes_bit_for_bit(tmp_path, tiny_data):
    """Three epochs of 600 real MNIST images, 100 of them labelled (the classification term weighed 1 per image, ten
    times the paper's, so that 36 steps teach it): the bound rises, the classifier's validation error falls well
    below chance's 0.9, the test error and its standard error reach the summary, and a run cut
    after epoch 1 and resumed ends with the same weights."""
    from vaekit.training import train

    config = RunConfig(
        ModelConfig(family="m2", hidden_dim=64, latent_dim=8, activation="softplus"),
        DataConfig(train_limit=600, eval_limit=200, labelled=100),
        TrainConfig(
            objective="m2", epochs=3, batch_size=50, eval_batch_size=200, learning_rate=3e-3, classification_weight=1.0
        ),
    )
    hidden = _hidden(tiny_data, 100)
    full = train(config, tmp_path / "full", progress=False, dataset=hidden)
    train(config.with_overrides({"train.epochs": 1}), tmp_path / "cut", progress=False, dataset=hidden)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False, dataset=hidden)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    first, last = full.metrics[0], full.metrics[-1]
    assert last["valid_elbo"] > first["valid_elbo"]
    assert last["valid_error"] < 0.5
    assert 0 < full.test["test_error"] < 0.5 and full.test["test_error_stderr"] == pytest.approx(
        math.sqrt(full.test["test_error"] * (1 - full.test["test_error"]) / 200)
    )


def test_m1_plus_m2_trains_from_a_vae_runs_features_in_one_command(tmp_path, trained_run_2d, capsys):
    """vaekit train --config mnist-m1-m2 --features-from RUN writes RUN/features.npz (the posterior means of every
    split, with their labels) and trains M2 on them; its summary states the test error, and vaekit evaluate too."""
    import shutil

    from vaekit.cli import main
    from vaekit.features import posterior_means
    from vaekit.rundir import load_run

    m1 = tmp_path / "m1"
    shutil.copytree(trained_run_2d, m1)
    run = tmp_path / "m1m2"
    argv = ["train", "--config", "mnist-m1-m2", "--features-from", str(m1), "--run-dir", str(run)]
    assert main([*argv, "--epochs", "1", "--batch-size", "50", "--no-progress", "--no-pictures"]) == 0
    assert "test error" in capsys.readouterr().out
    with np.load(m1 / "features.npz") as features:
        model, config = load_run(m1)
        x = load_dataset(config.data, config.model.image_shape).evaluation_observations("test")
        np.testing.assert_allclose(features["test_x"][:, 0, 0], posterior_means(model, x)[:, features["kept"]].numpy())
        assert features["train_x"].shape[1:] == (1, 1, len(features["kept"]))
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["dataset"] == "features" and saved["data"]["path"] == str(m1 / "features.npz")
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["test_error"] <= 1 and summary["test_error_stderr"] > 0
    assert main(["evaluate", str(run), "--samples", "10"]) == 0
    assert "test error" in capsys.readouterr().out


def test_the_kingma2014_experiment_runs_m2_m1_and_m1_m2_on_m1s_features(tmp_path, tiny_data):
    """The smoke budget: M2 on pixels with 100 labels, M1, then M1 + M2 on M1's features (written by the runner),
    each with its test error in the summary beside the paper's Table 1, and the class pictures of the models of
    labels."""
    from vaekit.experiments import ExperimentPlan
    from vaekit.experiments.runner import run_experiment

    out = tmp_path / "ssl"
    result = run_experiment(ExperimentPlan("kingma2014-ssl", "smoke"), out, dataset=tiny_data)
    rows = {row["run"]: row for row in result["runs"]}
    assert set(rows) == {"m2", "m1", "m1-m2"}
    assert 0 <= rows["m2"]["error"] <= 1 and 0 <= rows["m1-m2"]["error"] <= 1 and rows["m1"]["error"] is None
    table = (out / "summary.md").read_text()
    assert "| test error % |" in table and "| m1-m2 | " in table and "3.33 ± 0.14" in table
    saved = json.loads((out / "m1-m2" / "config.json").read_text())
    assert saved["data"]["path"] == str(out / "m1" / "features.npz") and saved["model"]["image_shape"] == [1, 1, 50]
    assert (out / "m2" / "images" / "classes.png").exists() and (out / "m2" / "images" / "analogies.png").exists()
    assert not (out / "m1-m2" / "images" / "classes.png").exists()  # features are no images to draw
    evaluation = rundir.find_evaluation(out / "m2", "test", 10)
    assert evaluation["active_units"] + evaluation["collapsed_units"] == 50  # z's units; the label is none
    assert len(evaluation["layers"][0]["kl_per_dim"]) == 50


def test_the_posteriors_parts_label_mean_and_detached_form_and_the_priors_join_and_draws():
    """The mean's one-hot is argmax q(y|x) (the given label once given); detach stops every part; the prior's split
    undoes join, and its labels are uniform over all C classes."""
    model, x = small_model(), binary_images(6)
    posterior = model.posterior(x)
    labels, z = model.prior.split(posterior.mean)
    assert torch.equal(labels, posterior.label_log_probs.argmax(-1))
    given = torch.tensor([3, 0, 1, 2, 3, 1])
    assert torch.equal(model.prior.split(posterior.given(given).mean)[0], given)
    stopped = posterior.detach()
    assert not any(t.requires_grad for t in (stopped.log_q_y, stopped.mu, stopped.logvar))
    round_trip = model.prior.split(model.prior.join(given, z))
    assert torch.equal(round_trip[0], given) and torch.equal(round_trip[1], z)
    drawn = model.prior.split(model.prior.sample(40_000, torch.Generator().manual_seed(0)))[0]
    assert (torch.bincount(drawn, minlength=CLASSES).double() / 40_000 - 1 / CLASSES).abs().max() < 0.01


def test_the_encoders_take_the_label_at_their_first_layer_and_the_classifier_gives_unclamped_logits():
    """q(z|x, y)'s parameters at label y are the heads of act(W1 x + b1 + W_y[:, y]) (the one-hot concatenated to
    x), and the logits of q(y|x) are the classifier's first head as it is."""
    model, x = small_model(), binary_images(3)
    logits, mu, logvar = model.encoder(x)
    latent, classifier = model.encoder.latent, model.encoder.classifier
    for y in range(CLASSES):
        h = torch.nn.functional.softplus(latent.hidden(x.flatten(1)) + latent.label.weight[:, y])
        mu_y, logvar_y = latent.heads(h).chunk(2, -1)
        torch.testing.assert_close(mu[:, y], mu_y)
        torch.testing.assert_close(logvar[:, y], logvar_y)
    torch.testing.assert_close(
        logits, classifier.heads(torch.nn.functional.softplus(classifier.hidden(x.flatten(1))))[:, :CLASSES]
    )
    assert build_model(ModelConfig(family="cvae", latent_dim=2, hidden_dim=8)).needs_labels
    assert not build_model(ModelConfig(family="m2", latent_dim=2, hidden_dim=8)).needs_labels


def test_the_cvae_objective_is_the_elbo_at_each_images_own_label():
    from vaekit.batch import Batch

    model, x = small_model("cvae"), binary_images(6)
    labels = torch.tensor([0, 1, 2, 3, 2, 1])
    objective = build_objective(model, TrainConfig(objective="cvae"))
    eps = _noise(6, 9)
    loss, terms = objective(Batch(x, labels), step=0, eps=eps)
    expected = elbo_at(model, x, model.posterior(x, labels), 1, eps=eps)
    torch.testing.assert_close(terms.elbo, expected.elbo)
    torch.testing.assert_close(loss, -expected.elbo.mean())


def test_the_labelled_subset_follows_its_protocol_and_the_labelled_minibatches_vary(tmp_path, tiny_data):
    """Class c's picks are the first N / K rows of its images under a permutation seeded by (seed, "labelled", c);
    M2's labelled minibatch is drawn afresh each step; labels beyond model.classes are refused."""
    from vaekit.randomness import seeded_generator
    from vaekit.training import check_data, minibatch, set_up

    labels = tiny_data.train.labels
    picked = labelled_subset(labels, 50, 3)
    for c in range(10):
        rows = (labels == c).nonzero()[:, 0]
        expected = rows[torch.randperm(len(rows), generator=seeded_generator(3, "labelled", c))[:5]]
        assert torch.equal(picked[labels[picked] == c], expected.sort().values)
    config = RunConfig(
        ModelConfig(family="m2", hidden_dim=16, latent_dim=2),
        DataConfig(labelled=100),
        TrainConfig(objective="m2", batch_size=20),
    )
    hidden = _hidden(tiny_data, 100)
    from vaekit import distributed

    loop = set_up(config, tmp_path, hidden, distributed.init("cpu"), False, lambda s: None, False)
    order = torch.arange(len(hidden.train))
    seen = []
    for step in range(3):
        loop.state.step = step
        batch, _ = minibatch(loop, order, step)
        assert len(batch) == 40 and (batch.labels[20:] >= 0).all()
        seen.append(batch.labels[20:])  # (the pixels differ anyway: a fresh binarization each step)
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    with pytest.raises(ConfigError, match="pass --classes 10"):
        check_data(config.with_overrides({"model.classes": 9, "data.labelled": 90}), hidden)


def test_evaluating_a_cvae_takes_the_split_labels(tmp_path, tiny_data):
    """evaluate_split on a conditional VAE states its bound at the labels: the same as evaluate_elbo's at them."""
    from vaekit.evaluation import evaluate_split

    model, x = small_model("cvae").float(), binary_images(20).float()
    labels = torch.arange(20) % CLASSES
    result = evaluate_split(model, x, num_importance_samples=5, labels=labels, seed=2)
    from vaekit.randomness import seeded_generator

    expected = evaluate_elbo(model, x, generator=seeded_generator(2, "eval"), labels=labels)
    assert result["elbo"] == pytest.approx(expected.elbo) and result["log_likelihood"] >= result["elbo"] - 5
    with pytest.raises(DataError, match="evaluated at its images' labels"):
        evaluate_split(model, x, num_importance_samples=0)
