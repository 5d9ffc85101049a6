"""Test-set evaluation: the ordering of the bounds, the IS estimator, chunking, PNG grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.config import ModelConfig, TrainConfig, TrialConfig
from models.data import load_dataset
from models.evaluation import (
    CPU_CHUNK_MB,
    evaluate,
    floats_per_pair,
    image_generator,
    plan_chunks,
    posterior_samples,
)
from models.images import make_grid, reconstruction_grid, save_png
from models.training import train

N_TEST = 40



def tiny_config(**model_changes) -> TrialConfig:
    fields = dict(image_shape=(8, 8), M=2, K=8, latent_dim=4, hidden_dim=32)
    fields.update(model_changes)
    train_cfg = TrainConfig(dataset="digits", max_epochs=8, warmup_epochs=2, patience=50,
                            seed=1, max_train_examples=400, max_test_examples=N_TEST,
                            device="cpu")
    return TrialConfig(ModelConfig(**fields), train_cfg)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=400, max_test=N_TEST)


@pytest.fixture(scope="module")
def trained(digits):
    """A GMMpVAE (M = 2, pseudo-input prior) after a short run on digits."""
    torch.set_num_threads(1)
    return train(tiny_config(), digits).model


def test_is_log_likelihood_above_mc_elbo_above_bound_elbo(trained, digits):
    ev = evaluate(trained, digits, is_samples=500, memory_mb=64, seed=0)
    s = ev.summary
    assert s["test_ll"] >= s["test_elbo_mc"] >= s["test_elbo_bound"]
    assert torch.all(ev.log_likelihood >= ev.elbo_mc - 1e-9)  # Jensen, same samples per image
    assert torch.allclose(ev.elbo_mc, -(ev.re + ev.kl_mc))
    assert torch.allclose(ev.elbo_bound, -(ev.re + ev.kl_bound))
    assert ev.log_likelihood.shape == (N_TEST,) and ev.matching == "greedy"
    assert all(math.isfinite(v) for v in s.values())
    assert s["test_ll"] == pytest.approx(float(ev.log_likelihood.mean()))
    rows = ev.rows()
    assert rows["image"] == list(range(N_TEST)) and len(rows["kl_mc"]) == N_TEST


def test_one_sample_is_estimate_equals_a_direct_single_sample_elbo(trained, digits):
    seed = 5
    ev = evaluate(trained, digits, is_samples=1, memory_mb=64, seed=seed)
    x = digits.test
    with torch.no_grad():
        mu, logvar = trained.encode(x)  # (N, M, D)
        direct = []
        for i in range(x.shape[0]):
            z = posterior_samples(mu[i], logvar[i], trained.pi, 1,
                                  image_generator(seed, i, x.device))  # (1, D): the same z
            log_w = (trained.log_px_given_z(x[i : i + 1], z[:, None])
                     + trained.prior.log_prob(z[:, None])
                     - trained.log_q(z[:, None], mu[i : i + 1], logvar[i : i + 1]))  # (1, 1)
            direct.append(float(log_w))
    direct_t = torch.tensor(direct, dtype=torch.float64)
    assert torch.allclose(ev.log_likelihood, direct_t, atol=1e-4, rtol=1e-5)
    assert torch.allclose(ev.elbo_mc, direct_t, atol=1e-4, rtol=1e-5)


def test_results_do_not_depend_on_the_memory_budget(trained, digits):
    floats = floats_per_pair(trained, trained.config.K * trained.config.M)
    samples = 2000
    images, chunk = plan_chunks(samples, 1, floats)
    assert images == 1 and chunk < samples // 4  # one image at a time, > 4 sample slices
    assert plan_chunks(samples, CPU_CHUNK_MB, floats)[0] > 1  # several whole images a chunk
    small = evaluate(trained, digits, is_samples=samples, memory_mb=1, seed=2)
    large = evaluate(trained, digits, is_samples=samples, memory_mb=512, seed=2)
    for name in ("log_likelihood", "elbo_mc", "re", "kl_mc", "kl_bound", "elbo_bound"):
        assert torch.allclose(getattr(small, name), getattr(large, name), rtol=1e-6, atol=1e-4)
    other_seed = evaluate(trained, digits, is_samples=samples, memory_mb=512, seed=3)
    assert not torch.equal(other_seed.log_likelihood, large.log_likelihood)


def test_plan_chunks():
    assert plan_chunks(100, 1, 1024) == (2, 100)  # 256 pairs: two images of 100 samples
    assert plan_chunks(5000, 1, 1024) == (1, 256)  # one image, 256 samples at a time
    assert plan_chunks(10, 1, 10**9) == (1, 1)  # never zero


def test_prior_components_are_computed_once_per_evaluation(trained, digits, monkeypatch):
    calls = {"n": 0}
    components = type(trained.prior).components

    def counted(self):
        calls["n"] += 1
        return components(self)

    monkeypatch.setattr(type(trained.prior), "components", counted)
    evaluate(trained, digits, is_samples=300, memory_mb=1, seed=0)  # many chunks
    assert calls["n"] == 1


def test_posterior_samples_follow_the_mixture():
    mu = torch.tensor([[-3.0, 0.0], [3.0, 1.0]])  # (M, D)
    logvar = torch.log(torch.tensor([[0.25, 0.25], [1.0, 1.0]]))
    pi = torch.tensor([0.3, 0.7])
    z = posterior_samples(mu, logvar, pi, 20_000, image_generator(0, 0, torch.device("cpu")))
    right = z[:, 0] > 0
    assert float(right.float().mean()) == pytest.approx(0.7, abs=0.02)
    assert float(z[right, 0].std()) == pytest.approx(1.0, abs=0.05)
    assert float(z[~right, 0].std()) == pytest.approx(0.5, abs=0.05)
    again = posterior_samples(mu, logvar, pi, 20_000, image_generator(0, 0, torch.device("cpu")))
    assert torch.equal(z, again)


def test_mc_estimator_reports_the_greedy_bound(digits):
    cfg = tiny_config(kl_estimator="mc")
    from models.training import build_model

    model = build_model(cfg, digits)
    ev = evaluate(model, digits, is_samples=20, memory_mb=8, seed=0)
    assert ev.matching == "greedy"
    with torch.no_grad():
        mu, logvar = model.encode(digits.test)
        greedy = model.prior.kl_bound(mu, logvar, model.log_pi, "greedy")
    assert torch.allclose(ev.kl_bound, greedy.double(), atol=1e-5)


def test_standard_prior_evaluates(digits):
    model = tiny_config(prior="standard", M=1)
    from models.training import build_model

    ev = evaluate(build_model(model, digits), digits, is_samples=50, memory_mb=8, seed=0)
    assert ev.summary["test_ll"] >= ev.summary["test_elbo_mc"]


def test_grids(tmp_path):
    images = torch.rand(10, 6)
    grid = make_grid(images, (2, 3), ncol=4)  # 3 rows of 4 tiles 2×3, padding 1
    assert grid.shape == (3 * 3 + 1, 4 * 4 + 1)
    assert np.allclose(grid[1:3, 1:4], images[0].view(2, 3).numpy())
    assert np.allclose(grid[4:6, 1:4], images[4].view(2, 3).numpy())  # second row starts at 4
    rec = reconstruction_grid(images[:4], 1 - images[:4], (2, 3), ncol=4)
    assert np.allclose(rec[4:6, 1:4], 1 - images[0].view(2, 3).numpy())  # below its input
    path = save_png(rec, tmp_path / "r.png", scale=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reconstruction_grid_keeps_columns_aligned():
    images = torch.rand(11, 4)
    rec = reconstruction_grid(images, images, (2, 2), ncol=4)  # 8 kept: 2 rows + 2 rows
    assert rec.shape == (4 * 3 + 1, 4 * 3 + 1)
    assert np.allclose(rec[7:9, 1:3], images[0].view(2, 2).numpy())  # row 3: first recon


def test_lse_is_reported_beside_u_and_matches_the_prior(digits):
    from models.kl import lse_of_bounds, pseudo_mixture_bound
    from models.training import build_model

    model = build_model(tiny_config(kl_estimator="lse", M=2, K=5), digits)
    ev = evaluate(model, digits, is_samples=20, memory_mb=8, seed=0)
    assert ev.matching == "greedy" and "test_kl_lse" in ev.summary
    assert bool((ev.kl_lse <= ev.kl_bound + 1e-6).all())
    with torch.no_grad():
        mu, logvar = model.encode(digits.test)
        comps = model.prior.components()
        bounds = pseudo_mixture_bound(mu, logvar, comps.mu, comps.logvar, model.log_pi)
    assert torch.allclose(ev.kl_lse, lse_of_bounds(bounds).double(), atol=1e-4)
    assert len(ev.rows()["kl_lse"]) == digits.test.shape[0]
