"""models/likelihoods.py: Bernoulli = −BCE with logits; the discretized logistic's 256 bins sum to
1 (including extreme locations and scales), match a plain CDF difference, and stay finite."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.likelihoods import (
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    Bernoulli,
    DiscretizedLogistic,
    build_likelihood,
)


def test_bernoulli_equals_minus_bce_with_logits():
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(4, 10, generator=g), generator=g)
    logits = 3 * torch.randn(4, 10, generator=g)
    expected = -torch.stack(
        [F.binary_cross_entropy_with_logits(logits[i], x[i], reduction="sum") for i in range(4)]
    )
    lik = Bernoulli()
    torch.testing.assert_close(lik.log_prob(x, logits[..., None]), expected)
    torch.testing.assert_close(lik.log_prob(x, logits), expected)  # (..., P) params too
    # Extra leading sample dims broadcast against x.
    stacked = lik.log_prob(x, logits[None, ..., None].expand(3, 4, 10, 1))
    torch.testing.assert_close(stacked, expected.expand(3, 4))


def test_bernoulli_sample_and_mean():
    torch.manual_seed(0)
    lik = Bernoulli()
    params = torch.tensor([[-50.0], [50.0], [0.0]]).expand(2000, 3, 1)
    sample = lik.sample(params)
    assert sample.shape == (2000, 3)
    assert sample[:, 0].sum() == 0 and sample[:, 1].sum() == 2000
    assert abs(sample[:, 2].mean().item() - 0.5) < 0.05
    torch.testing.assert_close(lik.mean(params[0]), torch.tensor([0.0, 1.0, 0.5]))


GRID = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "loc, log_scale",
    [
        (0.5, -3.0),
        (0.0, 0.0),
        (1.0, -7.0),
        (0.3137, -12.0),  # below LOG_SCALE_MIN: clamped, still a distribution
        (-100.0, -5.0),  # all mass in the first bin
        (100.0, -5.0),  # all mass in the last bin
        (0.5, 7.0),
        (0.5, 20.0),  # above LOG_SCALE_MAX: clamped
        (3.0, 1.0),
    ],
)
def test_discretized_logistic_bins_sum_to_one(loc, log_scale, dtype):
    lik = DiscretizedLogistic(256)
    x = GRID.to(dtype)[:, None]  # 256 one-pixel "images", one per bin
    params = torch.tensor([loc, log_scale], dtype=dtype).expand(256, 1, 2)
    log_p = lik.log_prob(x, params)  # (256,)
    assert torch.isfinite(log_p).all()
    total = torch.logsumexp(log_p.double(), 0).item()
    assert total == pytest.approx(0.0, abs=1e-5 if dtype == torch.float32 else 1e-10)
    # bin_log_probs gives the same 256 values at once.
    torch.testing.assert_close(lik.bin_log_probs(params[0])[0], log_p)


def _naive_bins(loc: float, log_scale: float) -> torch.Tensor:
    """P(bin k) = F(x + h) − F(x − h) with F(−∞) = 0, F(+∞) = 1, in float64."""
    s = torch.exp(torch.tensor(log_scale, dtype=torch.float64))
    h = 0.5 / 255
    upper = torch.sigmoid((GRID + h - loc) / s)
    lower = torch.sigmoid((GRID - h - loc) / s)
    upper[-1], lower[0] = 1.0, 0.0
    return upper - lower


@pytest.mark.parametrize("loc, log_scale", [(0.5, -3.0), (0.1, -1.0), (0.9, -5.0), (0.0, 0.5)])
def test_discretized_logistic_matches_cdf_difference(loc, log_scale):
    lik = DiscretizedLogistic()
    params = torch.tensor([loc, log_scale], dtype=torch.float64).expand(256, 1, 2)
    got = torch.exp(lik.log_prob(GRID[:, None], params))
    torch.testing.assert_close(got, _naive_bins(loc, log_scale), rtol=1e-8, atol=1e-12)


def test_discretized_logistic_log_prob_sums_pixels_and_has_finite_gradients():
    lik = DiscretizedLogistic()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (3, 7), generator=g).float() / 255
    x[0, 0], x[0, 1] = 0.0, 1.0  # edge bins
    loc = torch.tensor([-40.0, 40.0, 0.5, 0.2, 0.7, 1.5, -0.5]).repeat(3, 1)
    log_scale = torch.tensor([-9.0, 9.0, -7.0, 7.0, -2.0, 0.0, -4.0]).repeat(3, 1)
    params = torch.stack([loc, log_scale], -1).requires_grad_()  # (3, 7, 2)
    log_p = lik.log_prob(x, params)
    assert log_p.shape == (3,)
    per_pixel = [lik.log_prob(x[:, i : i + 1], params[:, i : i + 1]) for i in range(7)]
    torch.testing.assert_close(log_p, torch.stack(per_pixel).sum(0))
    log_p.sum().backward()
    assert torch.isfinite(params.grad).all()
    assert (params.grad[..., 0].abs().sum() > 0) and torch.isfinite(log_p).all()


def test_discretized_logistic_mean_and_sample():
    torch.manual_seed(0)
    lik = DiscretizedLogistic()
    params = torch.tensor([[0.5, -4.0], [-10.0, -3.0], [0.25, -2.0]])  # (P=3, 2)
    mean = lik.mean(params)
    expected = (torch.exp(lik.bin_log_probs(params)) * GRID.float()).sum(-1)
    torch.testing.assert_close(mean, expected)
    assert mean[0].item() == pytest.approx(0.5, abs=1e-4)  # symmetric around 0.5
    assert mean[1].item() == pytest.approx(0.0, abs=1e-4)  # all mass in bin 0
    sample = lik.sample(params.expand(20_000, 3, 2))
    assert sample.shape == (20_000, 3)
    assert torch.equal(torch.round(sample * 255) / 255, sample)  # on the grid
    assert ((sample >= 0) & (sample <= 1)).all()
    torch.testing.assert_close(sample.mean(0), mean, atol=0.01, rtol=0)


def test_build_likelihood():
    assert isinstance(build_likelihood("bernoulli"), Bernoulli)
    assert build_likelihood("bernoulli").n_params == 1
    assert isinstance(build_likelihood("logistic"), DiscretizedLogistic)
    assert build_likelihood("logistic").n_params == 2
    assert LOG_SCALE_MIN < LOG_SCALE_MAX
    with pytest.raises(ValueError, match="likelihood='gaussian'"):
        build_likelihood("gaussian")
