"""models/vae.py: the composed GMMpVAE. Gradients reach encoder, decoder and pseudo-inputs for
every architecture × prior × KL estimator; shapes for M ∈ {1, 2, 3}, K ∈ {1, 7}, batch 1 and 5,
images 28×28, 28×20 and 8×8; the loss terms are the documented estimators."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.config import ARCHITECTURES, KL_ESTIMATORS, PRIORS, ModelConfig
from models.distributions import log_mixture_diag, sample_stratified
from models.vae import GMMpVAE, LossTerms


def _cfg(**changes) -> ModelConfig:
    base = dict(
        arch="mlp",
        M=2,
        K=5,
        latent_dim=4,
        hidden_dim=16,
        image_shape=(8, 8),
        pixel_channels=4,
        pixel_layers=2,
    )
    return ModelConfig(**{**base, **changes})


def _images(cfg: ModelConfig, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if cfg.likelihood == "logistic":
        return torch.randint(0, 256, (batch, cfg.n_pixels), generator=g).float() / 255
    return torch.bernoulli(torch.rand(batch, cfg.n_pixels, generator=g), generator=g)


def _grad_ok(params) -> bool:
    params = list(params)
    finite = all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    return finite and sum(p.grad.abs().sum().item() for p in params) > 0


@pytest.mark.parametrize(
    "arch, prior, estimator", list(itertools.product(ARCHITECTURES, PRIORS, KL_ESTIMATORS))
)
def test_gradients_finite_and_nonzero_everywhere(arch: str, prior: str, estimator: str):
    torch.manual_seed(0)
    cfg = _cfg(arch=arch, prior=prior, kl_estimator=estimator)
    model = GMMpVAE(cfg)
    terms = model(_images(cfg, 4), beta=0.7)
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert _grad_ok(model.encoder.parameters())
    assert _grad_ok(model.decoder.parameters())
    if prior == "pseudo_mixture":
        assert _grad_ok([model.prior.pseudo_inputs])
    else:
        assert not hasattr(model.prior, "pseudo_inputs")
    assert all(p.grad is not None for p in model.parameters())  # nothing left out of the graph


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("image_shape", [(28, 28), (28, 20), (8, 8)])
def test_shapes_forward_reconstruct_sample(arch: str, image_shape: tuple[int, int]):
    likelihood = "logistic" if image_shape == (28, 20) else "bernoulli"
    for n_comp, k, batch in itertools.product((1, 2, 3), (1, 7), (1, 5)):
        torch.manual_seed(0)
        cfg = _cfg(arch=arch, M=n_comp, K=k, image_shape=image_shape, likelihood=likelihood)
        model = GMMpVAE(cfg)
        x = _images(cfg, batch)
        terms = model(x)
        assert terms.loss.shape == ()
        for name in ("re", "kl", "kl_greedy", "kl_optimal", "kl_mc"):
            assert getattr(terms, name).shape == (batch,), name
        mu, logvar = model.encode(x)
        assert mu.shape == logvar.shape == (batch, n_comp, cfg.latent_dim)
        # The PixelCNN draws pixel by pixel: sample it only once per image size (small n).
        if arch != "pixel" or (n_comp, k, batch) == (3, 7, 5):
            recon = model.reconstruct(x)
            assert recon.shape == (batch, cfg.n_pixels)
            assert ((recon >= 0) & (recon <= 1)).all()
            samples = model.sample(2 if arch == "pixel" else 3)
            assert samples.shape == (2 if arch == "pixel" else 3, cfg.n_pixels)
            assert ((samples >= 0) & (samples <= 1)).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_log_px_given_z_broadcasts_sample_dims(arch: str):
    torch.manual_seed(0)
    cfg = _cfg(arch=arch)
    model = GMMpVAE(cfg)
    x = _images(cfg, 3)
    z = torch.randn(4, 3, cfg.latent_dim)  # (S, B, D)
    got = model.log_px_given_z(x, z)
    assert got.shape == (4, 3)
    expected = torch.stack([model.log_px_given_z(x, z[s]) for s in range(4)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    one = model.log_px_given_z(x[:1], z[:1, :1])  # (1, 1)
    torch.testing.assert_close(one[0, 0], got[0, 0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_forward_terms_are_the_documented_estimators(estimator: str):
    cfg = _cfg(M=3, K=4, pi=(0.5, 0.3, 0.2), kl_estimator=estimator)
    torch.manual_seed(0)
    model = GMMpVAE(cfg)
    x = _images(cfg, 5)
    torch.manual_seed(1)
    terms = model(x, beta=0.25)
    assert isinstance(terms, LossTerms)
    assert "_reported" not in vars(terms)  # the detached KLs are computed when first read
    torch.testing.assert_close(terms.loss, (terms.re + 0.25 * terms.kl).mean())
    torch.testing.assert_close(terms.kl.detach(), getattr(terms, f"kl_{estimator}"))
    assert terms.kl.requires_grad
    assert not any(t.requires_grad for t in (terms.kl_greedy, terms.kl_optimal, terms.kl_mc))
    assert (terms.kl_optimal <= terms.kl_greedy + 1e-5).all()

    # Re-derive RE and the MC KL from the same stratified samples.
    torch.manual_seed(1)
    mu, logvar = model.encode(x)
    z = sample_stratified(mu, logvar).transpose(0, 1)  # (M, B, D)
    pi = model.pi[:, None]
    re = -(pi * model.log_px_given_z(x, z)).sum(0)
    log_q = log_mixture_diag(z, mu, logvar, torch.log(model.pi))
    kl_mc = (pi * (log_q - model.prior.log_prob(z))).sum(0)
    torch.testing.assert_close(terms.re, re)
    torch.testing.assert_close(terms.kl_mc, kl_mc.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.log_q(z, mu, logvar), log_q)
    log_pi = torch.log(model.pi)
    for matching in ("greedy", "optimal"):
        bound = model.prior.kl_bound(mu, logvar, log_pi, matching)
        torch.testing.assert_close(getattr(terms, f"kl_{matching}"), bound.detach())
    # First read after an optimiser step, the reports still describe the batch's forward pass.
    torch.manual_seed(1)
    unread = model(x, beta=0.25)
    unread.loss.backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    for name in ("kl_greedy", "kl_optimal", "kl_mc"):
        torch.testing.assert_close(getattr(unread, name), getattr(terms, name))


@pytest.mark.parametrize("prior, n_comp", [("standard", 3), ("pseudo_mixture", 1)])
def test_greedy_equals_optimal_for_standard_prior_and_m1(prior: str, n_comp: int):
    torch.manual_seed(0)
    cfg = _cfg(prior=prior, M=n_comp)
    terms = GMMpVAE(cfg)(_images(cfg, 5))
    torch.testing.assert_close(terms.kl_greedy, terms.kl_optimal)


def test_reconstruct_uses_most_probable_component():
    torch.manual_seed(0)
    cfg = _cfg(M=3, pi=(0.2, 0.5, 0.3))
    model = GMMpVAE(cfg)
    x = _images(cfg, 3)
    mu, _ = model.encode(x)
    expected = torch.sigmoid(model.decoder(mu[:, 1], None)[..., 0])
    torch.testing.assert_close(model.reconstruct(x), expected)
    mean_samples = model.sample(4, mean=True)
    assert mean_samples.shape == (4, cfg.n_pixels)


def test_config_buffer_and_checkpoint_round_trip():
    torch.manual_seed(0)
    cfg = _cfg(M=2, pi=(0.7, 0.3), likelihood="logistic")
    model = GMMpVAE(cfg)
    assert model.config is cfg
    torch.testing.assert_close(model.pi, torch.tensor([0.7, 0.3]))
    state = {"config": cfg.to_dict(), "model": model.state_dict()}
    assert "pi" in state["model"] and "prior.pseudo_inputs" in state["model"]
    clone = GMMpVAE(ModelConfig.from_dict(state["config"]))
    clone.load_state_dict(state["model"])
    x = _images(cfg, 4)
    torch.manual_seed(3)
    a = model(x)
    torch.manual_seed(3)
    b = clone(x)
    torch.testing.assert_close(a.loss, b.loss)


def test_a_few_adam_steps_lower_the_loss():
    torch.manual_seed(0)
    cfg = _cfg(M=2, K=5)
    model = GMMpVAE(cfg)
    x = _images(cfg, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        terms = model(x)
        terms.loss.backward()
        optimizer.step()
        losses.append(terms.loss.item())
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
