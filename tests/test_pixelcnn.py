"""The gated PixelCNN: causality and no blind spot from autograd's Jacobian, normalisation of the joint by
enumeration, ancestral sampling against log_prob, training, and the errors for bad codes."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

from vaekit.errors import ConfigError, DataError
from vaekit.models.pixelcnn import GatedPixelCNN


def _model(codebook_size=4, channels=8, layers=3, kernel_size=3, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return GatedPixelCNN(codebook_size, channels, layers, kernel_size).to(dtype)


def _dependence(net, channels, shape):
    """seen[i, j] = sum over channels of |d sum_k out[k, i] / d e[:, j]|, i and j raster positions, for a random
    input e (1, channels, h, w) in float64: output i depends on input j exactly where it is non-zero."""
    torch.manual_seed(1)
    e = torch.randn(1, channels, *shape, dtype=torch.float64)
    jac = jacobian(lambda x: net(x).sum(1).flatten(), e)  # (h w, 1, channels, h, w)
    return jac.abs().sum(dim=(1, 2)).flatten(1)  # (h w outputs, h w inputs)


class _MaskedConv(nn.Conv2d):
    """A plain 3x3 masked convolution of the first PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel
    Recurrent Neural Networks"): the row above and the pixels to the left, the centre too where `centre`."""

    def __init__(self, channels: int, centre: bool) -> None:
        super().__init__(channels, channels, 3, padding=1)
        mask = torch.ones(3, 3, dtype=torch.float64)
        mask[1, 1 + centre :], mask[2] = 0, 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)


@pytest.mark.parametrize("kernel_size, shape", [(3, (5, 5)), (5, (5, 5)), (3, (4, 6))])
def test_no_output_depends_on_its_own_code_or_a_later_one(kernel_size, shape):
    """Causality, exactly: logits at raster position i have zero gradient with respect to the embedding at
    every j >= i. Catches a type-B first layer (i sees itself), the vertical stack linked without its shift
    down (i sees its row's future), padding on the wrong side, a residual on the first layer."""
    model = _model(channels=16, layers=4, kernel_size=kernel_size)
    seen = _dependence(model.embedded_logits, 16, shape)
    assert seen.triu().abs().max() == 0


def test_every_output_sees_every_earlier_code_no_blind_spot():
    """No blind spot: on 5x5 with kernel 3 (p = 1), 4 layers are the fewest that satisfy L p >= max(h - 2, w - 1),
    and then every j < i has a non-zero gradient, in particular up and to the right of i, which a plain stack of
    masked 3x3 convolutions never reaches (from (1, 0), (0, 2) is blind even after 6 layers). With 3 layers,
    (1, 0) does not yet see (0, 4): the receptive field is the documented one. With the vertical-to-horizontal
    links zeroed, no row above is seen: the link is what removes the blind spot. 16 channels, so that no
    position's head has all its ReLUs off (a zero gradient from a dead unit is not a blind spot)."""
    model = _model(channels=16, layers=4)
    seen = _dependence(model.embedded_logits, 16, (5, 5))
    assert (seen.tril(-1) > 0).sum() == 25 * 24 // 2

    torch.manual_seed(0)
    plain = nn.Sequential(_MaskedConv(16, False), *[m for _ in range(5) for m in (nn.Tanh(), _MaskedConv(16, True))])
    plain_seen = _dependence(plain.double(), 16, (5, 5))
    assert plain_seen[5, 1] > 0 and plain_seen[5, 2] == 0  # (1, 0) sees (0, 1) but not (0, 2)
    assert plain_seen.triu().abs().max() == 0  # the plain stack is causal too, only blind

    shallow_seen = _dependence(_model(channels=16, layers=3).embedded_logits, 16, (5, 5))
    assert shallow_seen[5, 3] > 0 and shallow_seen[5, 4] == 0

    with torch.no_grad():
        for layer in model.layers:
            layer.link.weight.zero_()
    assert _dependence(model.embedded_logits, 16, (5, 5))[5:, :5].abs().max() == 0


def test_conditionals_are_distributions_and_log_prob_is_their_sum_at_the_codes():
    """Each position's softmax over the K logits sums to one, and log_prob equals sum_{r, c} log softmax(
    logits)[b, z_rc, r, c] by an explicit loop. Catches logits with the codes on the wrong axis, a gather along
    the wrong dimension, a mean instead of a sum, a log in base 2."""
    model = _model(codebook_size=5)
    codes = torch.randint(0, 5, (3, 4, 6), generator=torch.Generator().manual_seed(0))
    logits = model(codes)
    assert logits.shape == (3, 5, 4, 6)
    torch.testing.assert_close(torch.softmax(logits, dim=1).sum(1), torch.ones(3, 4, 6, dtype=torch.float64))
    log_p = torch.log_softmax(logits, dim=1)
    by_hand = [sum(log_p[b, codes[b, r, c], r, c] for r in range(4) for c in range(6)) for b in range(3)]
    torch.testing.assert_close(model.log_prob(codes), torch.stack(by_hand))


def test_the_joint_sums_to_one_over_every_code_map():
    """The chain rule: on a 2x2 map with K = 3, exp(log_prob) summed over all 3^4 maps is 1 (float64). A model
    whose conditionals see their own code, or a later one, sums to something else."""
    model = _model(codebook_size=3, layers=2)
    maps = torch.tensor(list(itertools.product(range(3), repeat=4))).view(81, 2, 2)
    total = model.log_prob(maps).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-12)


def test_sampling_repeats_under_a_seed_and_follows_a_dominant_code():
    """Samples are (n, h, w) int64 in [0, K), equal under the same seeded generator (a draw from the global RNG
    would differ), different under another seed; and a final bias that favours code 3 by 50 nats gives code 3
    everywhere (a draw along the wrong axis or from the wrong position's logits would not)."""
    model = _model(codebook_size=5, dtype=torch.float32)
    codes = model.sample(6, (3, 4), generator=torch.Generator().manual_seed(7))
    assert codes.shape == (6, 3, 4) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < 5
    assert torch.equal(codes, model.sample(6, (3, 4), generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(codes, model.sample(6, (3, 4), generator=torch.Generator().manual_seed(8)))
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0]))
    assert torch.equal(model.sample(4, (3, 4), torch.Generator().manual_seed(0)), torch.full((4, 3, 4), 3))


def test_samples_follow_the_joint_that_log_prob_gives():
    """Ancestral sampling: over 4,000 samples of a 2x2 map with K = 2, each of the 16 maps' frequency is within 5
    standard errors of exp(log_prob). The weights are scaled up so that the conditionals depend strongly on the
    earlier codes; all positions drawn from one pass over a blank map, or a position drawn from another's
    conditional, would be off by far more."""
    model = _model(codebook_size=2, layers=2, seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    n = 4000
    samples = model.sample(n, (2, 2), torch.Generator().manual_seed(0))
    maps = torch.tensor(list(itertools.product(range(2), repeat=4))).view(16, 2, 2)
    p = model.log_prob(maps).exp()
    frequency = (samples.view(n, 1, 4) == maps.view(1, 16, 4)).all(-1).double().mean(0)
    assert (frequency - p).abs().max() <= 5 * (p * (1 - p) / n).sqrt().max()


def test_a_few_adam_steps_lower_the_negative_log_likelihood():
    """Training works: 30 Adam steps on 16 constant 4x4 maps of K = 4 codes at least halve the mean NLL from
    about 16 log 4 (a detached graph or a log_prob that does not reach the weights would leave it)."""
    torch.manual_seed(0)
    model = GatedPixelCNN(4, channels=16, layers=3)
    codes = torch.arange(4).repeat(4).view(16, 1, 1).expand(16, 4, 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = -model.log_prob(codes).mean().item()
    for _ in range(30):
        optimiser.zero_grad()
        (-model.log_prob(codes).mean()).backward()
        optimiser.step()
    after = -model.log_prob(codes).mean().item()
    assert abs(before - 16 * math.log(4)) < 3 and after < before / 2


@pytest.mark.parametrize(
    "codes, message",
    [
        (torch.zeros(2, 3, 3), "must be an integer tensor, not torch.float32"),
        (torch.zeros(2, 3, 3, dtype=torch.bool), "must be an integer tensor, not torch.bool"),
        (torch.zeros(3, 3, dtype=torch.int64), r"must be 3-D \(batch, height, width\), not of shape \(3, 3\)"),
        (torch.full((2, 3, 3), 4), r"must lie in \[0, 4\), but they range over \[4, 4\]"),
        (torch.tensor([[[0, -1], [2, 3]]]), r"must lie in \[0, 4\), but they range over \[-1, 3\]"),
    ],
)
def test_bad_codes_are_refused_in_one_sentence(codes, message):
    """Float, boolean, 2-D and out-of-range codes raise DataError naming the problem, from forward and log_prob
    alike; without the check an index of K or -1 would fail inside the embedding with an opaque message, or
    a float map be silently truncated."""
    model = _model()
    for call in (model, model.log_prob):
        with pytest.raises(DataError, match=message):
            call(codes)


@pytest.mark.parametrize("kernel_size, layers", [(4, 3), (1, 3), (3, 0)])
def test_a_kernel_without_a_centre_or_no_layers_is_refused(kernel_size, layers):
    """An even kernel has no centre column (its receptive field would lean to one side) and zero layers leave
    no type-A layer (every output would see its own code): both raise ConfigError naming the values."""
    with pytest.raises(ConfigError, match=f"not {kernel_size} and {layers}"):
        GatedPixelCNN(4, 8, layers, kernel_size)
