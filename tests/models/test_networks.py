"""Tests of models/networks.py: shapes for every architecture, the gated unit, He init, the
PixelCNN's raster-order causality and its sampler, and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from models.config import ModelConfig
from models.networks import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    GatedConv2d,
    GatedDense,
    build_decoder,
    build_encoder,
)

ARCHS = ("mlp", "cnn", "pixel")
SHAPES = ((28, 28), (28, 20), (8, 8))


def small_config(arch: str, image_shape: tuple[int, int] = (8, 8), M: int = 1) -> ModelConfig:
    return ModelConfig(
        arch=arch,
        M=M,
        latent_dim=6,
        hidden_dim=32,
        image_shape=image_shape,
        pixel_layers=3,
        pixel_channels=8,
    )


class StandInBernoulli:
    """Stand-in for models.likelihoods.Bernoulli: params (..., P, 1) logits → (..., P) draws."""

    n_params = 1

    def sample(self, params: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params[..., 0]))


class ThresholdLikelihood:
    """A deterministic 'sampler' (logit > 0) so a sampled image can be checked exactly."""

    n_params = 1

    def sample(self, params: Tensor) -> Tensor:
        return (params[..., 0] > 0).to(params.dtype)


class StandInLogistic:
    """Stand-in for a discretized logistic on 256 bins: params (..., P, 2) → (..., P) in [0, 1]."""

    n_params = 2

    def sample(self, params: Tensor) -> Tensor:
        loc, log_scale = torch.sigmoid(params[..., 0]), params[..., 1].clamp(-7, 2)
        u = torch.rand_like(loc).clamp(1e-5, 1 - 1e-5)
        x = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        return (x.clamp(0, 1) * 255).round() / 255


# ----------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("M", [1, 2, 3])
@pytest.mark.parametrize("image_shape", SHAPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_shapes(arch: str, image_shape: tuple[int, int], M: int, batch: int) -> None:
    torch.manual_seed(0)
    cfg = small_config(arch, image_shape, M)
    x = torch.rand(batch, cfg.n_pixels)
    mu, logvar = build_encoder(cfg)(x)
    assert mu.shape == logvar.shape == (batch, M, cfg.latent_dim)
    assert torch.isfinite(mu).all()
    assert logvar.min() >= LOGVAR_MIN and logvar.max() <= LOGVAR_MAX
    z = torch.randn(batch, cfg.latent_dim)
    for n_params in (1, 2):
        decoder = build_decoder(cfg, n_params)
        assert decoder.autoregressive == (arch == "pixel")
        params = decoder(z, x)
        assert params.shape == (batch, cfg.n_pixels, n_params)
        assert torch.isfinite(params).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_leading_dims(arch: str) -> None:
    """Extra leading dims (S importance samples × B images) pass through; x broadcasts."""
    cfg = small_config(arch, (8, 8), M=2)
    x = torch.rand(3, cfg.n_pixels)
    mu, _ = build_encoder(cfg)(x[None].expand(4, 3, -1))
    assert mu.shape == (4, 3, 2, cfg.latent_dim)
    params = build_decoder(cfg, 2)(torch.randn(4, 3, cfg.latent_dim), x)
    assert params.shape == (4, 3, cfg.n_pixels, 2)


def test_logvar_clamped_on_extreme_inputs() -> None:
    cfg = small_config("mlp")
    encoder = build_encoder(cfg)
    _, logvar = encoder(1e3 * torch.randn(50, cfg.n_pixels))
    assert logvar.min() >= LOGVAR_MIN and logvar.max() <= LOGVAR_MAX
    assert (logvar == LOGVAR_MIN).any() or (logvar == LOGVAR_MAX).any()


def test_non_autoregressive_decoders_ignore_x() -> None:
    for arch in ("mlp", "cnn"):
        decoder = build_decoder(small_config(arch), 1)
        z = torch.randn(2, 6)
        assert torch.equal(decoder(z, None), decoder(z, torch.rand(2, 64)))


def test_pixel_decoder_needs_x() -> None:
    decoder = build_decoder(small_config("pixel"), 1)
    with pytest.raises(ValueError, match="autoregressive"):
        decoder(torch.randn(2, 6), None)


# ----------------------------------------------------------------------------------------------
# Gated layers and initialisation


def test_gated_dense_matches_manual() -> None:
    torch.manual_seed(0)
    layer = GatedDense(7, 5)
    x = torch.randn(4, 7)
    w, v = layer.linear.weight[:5], layer.linear.weight[5:]
    b, c = layer.linear.bias[:5], layer.linear.bias[5:]
    expected = (x @ w.T + b) * torch.sigmoid(x @ v.T + c)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("mask", [None, "A", "B"])
def test_gated_conv_matches_manual(mask: str | None) -> None:
    torch.manual_seed(0)
    layer = GatedConv2d(3, 4, 3, mask=mask)
    x = torch.randn(2, 3, 6, 5)
    weight = layer.conv.weight if mask is None else layer.conv.weight * layer.conv.mask
    w, v = weight[:4], weight[4:]
    b, c = layer.conv.bias[:4], layer.conv.bias[4:]
    expected = F.conv2d(x, w, b, padding=1) * torch.sigmoid(F.conv2d(x, v, c, padding=1))
    torch.testing.assert_close(layer(x), expected)


def test_gated_conv_stride_halves_any_size() -> None:
    layer = GatedConv2d(1, 2, 3, stride=2)
    assert layer(torch.randn(1, 1, 7, 5)).shape == (1, 2, 4, 3)


def test_masks_are_raster_causal() -> None:
    mask_a = GatedConv2d(1, 1, 5, mask="A").conv.mask[0, 0]
    mask_b = GatedConv2d(1, 1, 5, mask="B").conv.mask[0, 0]
    expected_a = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
        dtype=mask_a.dtype,
    )
    assert torch.equal(mask_a, expected_a)
    expected_b = expected_a.clone()
    expected_b[2, 2] = 1
    assert torch.equal(mask_b, expected_b)


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mlp", hidden_dim=512, latent_dim=8)
    first = build_encoder(cfg).body[0].linear  # fan-in 784, 1024 × 784 weights
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.03)
    assert torch.all(first.bias == 0)
    conv_cfg = ModelConfig(arch="cnn", hidden_dim=8, latent_dim=8)
    conv = build_decoder(conv_cfg, 1).convs[1].conv  # fan-in 64 · 3 · 3, 128 × 576 weights
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)


# ----------------------------------------------------------------------------------------------
# PixelCNN


@pytest.mark.parametrize("image_shape", [(8, 8), (6, 5)])
def test_pixel_decoder_is_raster_causal_and_uses_z(image_shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    cfg = small_config("pixel", image_shape)
    decoder = build_decoder(cfg, 2)
    height, width = image_shape
    n = cfg.n_pixels
    z = torch.randn(2, cfg.latent_dim, requires_grad=True)
    x = torch.rand(2, n, requires_grad=True)
    params = decoder(z, x)  # (2, P, 2)
    for i in sorted({0, 1, width - 1, width, width + 1, n // 2, n - 1}):
        for k in range(2):
            grad_x, grad_z = torch.autograd.grad(params[:, i, k].sum(), (x, z), retain_graph=True)
            assert torch.all(grad_x[:, i:] == 0), f"pixel {i} sees itself or a later pixel"
            if i > 0:
                assert grad_x[:, :i].abs().sum() > 0, f"pixel {i} sees no earlier pixel"
            assert grad_z.abs().sum() > 0, f"pixel {i} does not depend on z"


def test_pixel_sample_is_consistent_with_teacher_forcing() -> None:
    """With a deterministic sampler, every sampled pixel equals what the teacher-forced network
    predicts from the sampled image — checks the raster loop and its row-band shortcut."""
    torch.manual_seed(0)
    cfg = small_config("pixel", (12, 5))  # taller than the visible band of rows
    decoder = build_decoder(cfg, 1)
    z = torch.randn(6, cfg.latent_dim)
    image = decoder.sample(z, ThresholdLikelihood())
    assert image.shape == (6, cfg.n_pixels)
    assert torch.equal(image, ThresholdLikelihood().sample(decoder(z, image)))
    assert 0 < image.mean() < 1  # not a degenerate all-0 / all-1 image


DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize(
    "likelihood", [StandInBernoulli(), StandInLogistic()], ids=lambda lik: type(lik).__name__
)
def test_pixel_sample_in_support(device: torch.device, likelihood) -> None:
    torch.manual_seed(0)
    cfg = small_config("pixel", (8, 8))
    decoder = build_decoder(cfg, likelihood.n_params).to(device)
    z = torch.randn(4, cfg.latent_dim, device=device)
    image = decoder.sample(z, likelihood)
    assert image.shape == (4, cfg.n_pixels) and image.device.type == device.type
    assert image.min() >= 0 and image.max() <= 1
    if likelihood.n_params == 1:
        assert torch.all((image == 0) | (image == 1))
    else:
        assert torch.allclose(image * 255, (image * 255).round(), atol=1e-4)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_non_autoregressive_sample(arch: str) -> None:
    decoder = build_decoder(small_config(arch), 1)
    image = decoder.sample(torch.randn(3, 6), StandInBernoulli())
    assert image.shape == (3, 64) and torch.all((image == 0) | (image == 1))


# ----------------------------------------------------------------------------------------------
# Gradient flow


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch: str) -> None:
    torch.manual_seed(0)
    cfg = small_config(arch, (8, 8), M=2)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg, 2)
    x = torch.rand(5, cfg.n_pixels)
    mu, logvar = encoder(x)
    z = mu[:, 0] + torch.randn_like(mu[:, 0]) * (0.5 * logvar[:, 0]).exp()
    params = decoder(z, x)
    loss = (params * torch.randn_like(params)).sum() + (mu * torch.randn_like(mu)).sum()
    loss = loss + (logvar * torch.randn_like(logvar)).sum()
    loss.backward()
    for name, p in [*encoder.named_parameters(), *decoder.named_parameters()]:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
