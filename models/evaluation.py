"""Test-set evaluation of a trained GMMpVAE (docs/MATH.md#evaluation).

Per test image x, all in nats, all log-densities with their constants:

- ``log_likelihood``: the importance-sampled estimate (VampPrior's, with S = ``is_samples``)
  log p(x) ≈ logsumexp_s [log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S, z_s ∼ q(z|x)
  drawn as a mixture: component m ∼ π, then z = μ_m + σ_m ε;
- ``re`` = −E_q[log p(x|z)] and ``kl_mc`` = E_q[log q(z|x) − log p(z)], both averaged over the
  same S samples (the same quantities as training's stratified one-sample-per-component
  estimates, with S samples instead of M); ``elbo_mc`` = mean_s log w_s = −(re + kl_mc), the MC
  ELBO. By Jensen's inequality on the very same samples, log_likelihood ≥ elbo_mc for every
  image;
- ``kl_bound`` = U(x), the matched bound the loss uses (eq. 18/22): optimal matching when the
  model was trained with ``kl_estimator = "optimal"``, otherwise greedy (eq. 13) — a model
  trained with the MC estimator reports the greedy bound here;
- ``kl_lse`` = U_lse(x) = −log (1/K) Σ_k exp(−B_βk) (greedy β; models.kl), reported for every
  model whatever it was trained with, so U, U_lse and KL_MC stand side by side
  (U_lse ≤ U; U_lse ≥ KL up to the MC error of kl_mc);
- ``elbo_bound`` = −(re + kl_bound), the paper's "≤ ln p(x)" column (eq. 23); since
  U ≥ KL, elbo_bound ≤ elbo_mc up to the Monte Carlo error of kl_mc.

Importance sampling is batched over many images and samples at once and chunked to a memory
budget (``memory_mb``; on a CPU at most `CPU_CHUNK_MB`, which is faster). The prior's
components (for the pseudo-input prior: the encoder applied to the K pseudo-inputs) are
computed once per evaluation, not once per chunk as VampPrior does.
Each image's samples come from its own generator seeded by (seed, image index), so the numbers
do not depend on how the work is chunked (up to float rounding in the matrix products).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from models.distributions import log_mixture_diag, log_mixture_diag_flat

ENCODE_BATCH = 1000  # images per encoder / KL-bound pass
BYTES_PER_FLOAT = 4
# On a CPU the budget is a maximum, not a target: chunks whose temporaries stay near cache size
# run ~2x faster than chunks of hundreds of MB (memory traffic of the element-wise passes:
# likelihood, gates, logsumexp). A GPU uses the whole budget (fewer, larger kernels).
CPU_CHUNK_MB = 16
SUMMARY_KEYS = {
    "test_re": "re", "test_kl": "kl_bound", "test_kl_mc": "kl_mc",
    "test_kl_lse": "kl_lse", "test_elbo_bound": "elbo_bound", "test_elbo_mc": "elbo_mc",
    "test_ll": "log_likelihood",
}


@dataclass
class Evaluation:
    """Per-image values (N,) (float64, CPU) and their means in ``summary``."""

    re: Tensor
    kl_bound: Tensor
    kl_mc: Tensor
    kl_lse: Tensor
    elbo_bound: Tensor
    elbo_mc: Tensor
    log_likelihood: Tensor
    matching: str  # which bound kl_bound is: "greedy" or "optimal"
    is_samples: int
    seconds: float
    summary: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = {k: float(getattr(self, v).mean()) for k, v in SUMMARY_KEYS.items()}

    def rows(self) -> dict[str, Any]:
        """Columns of test_ll.parquet: one row per test image."""
        return {
            "image": list(range(self.log_likelihood.shape[0])),
            "log_likelihood": self.log_likelihood.tolist(),
            "elbo_bound": self.elbo_bound.tolist(),
            "elbo_mc": self.elbo_mc.tolist(),
            "re": self.re.tolist(),
            "kl_bound": self.kl_bound.tolist(),
            "kl_mc": self.kl_mc.tolist(),
            "kl_lse": self.kl_lse.tolist(),
        }


def bound_matching(model: nn.Module) -> str:
    """The matching of the reported bound: the training one, greedy for the MC estimator."""
    return "optimal" if model.config.kl_estimator == "optimal" else "greedy"


# ----------------------------------------------------------------------------------------------
# Sampling q(z|x) reproducibly, image by image


def image_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The generator of test image ``index``'s samples: independent of batching and chunking."""
    mixed = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) % (1 << 63)
    return torch.Generator(device=device).manual_seed(mixed)


def posterior_samples(mu: Tensor, logvar: Tensor, pi: Tensor, n: int,
                      generator: torch.Generator) -> Tensor:
    """n draws from one image's q(z|x) = Σ_m π_m N(μ_m, σ²_m): mu, logvar (M, D), pi (M,) →
    (n, D). The component m ∼ π first (all n), then ε ∼ N(0, I) (n, D); z = μ_m + σ_m ε."""
    if pi.shape[0] > 1:
        comp = torch.multinomial(pi, n, replacement=True, generator=generator)  # (n,)
    else:
        comp = torch.zeros(n, dtype=torch.long, device=mu.device)
    eps = torch.randn(n, mu.shape[-1], generator=generator, device=mu.device, dtype=mu.dtype)
    return mu[comp] + torch.exp(0.5 * logvar[comp]) * eps  # (n, D)


# ----------------------------------------------------------------------------------------------
# Chunking to a memory budget


def floats_per_pair(model: nn.Module, n_components: int) -> int:
    """A generous estimate of the float32 temporaries of one (image, sample) pair: the decoder's
    activations and likelihood terms, the prior's (C = K·M) component log-densities, q's."""
    cfg = model.config
    n_params = model.likelihood.n_params
    floats = 8 * cfg.hidden_dim + 4 * cfg.n_pixels * n_params + 3 * n_components
    floats += 4 * cfg.M * cfg.latent_dim + 8 * cfg.latent_dim + 16
    if cfg.arch != "mlp":  # convolutional feature maps: channels × pixels per layer
        floats += 3 * cfg.pixel_channels * cfg.n_pixels * max(cfg.pixel_layers, 2)
    return floats


def plan_chunks(n_samples: int, memory_mb: float, floats: int) -> tuple[int, int]:
    """(images per chunk, samples per chunk): all S samples of several images when they fit,
    else one image at a time in slices of samples."""
    pairs = max(1, int(memory_mb * 2**20) // (BYTES_PER_FLOAT * floats))
    if pairs >= n_samples:
        return pairs // n_samples, n_samples
    return 1, pairs


# ----------------------------------------------------------------------------------------------
# Evaluation


@torch.inference_mode()
def importance_sampling(model: nn.Module, x: Tensor, mu: Tensor, logvar: Tensor, n_samples: int,
                        memory_mb: int, seed: int, components: Any = None,
                        first_index: int = 0, progress: bool = False) -> dict[str, Tensor]:
    """Per image of x (N, P) with posterior parameters mu, logvar (N, M, D): the IS
    log-likelihood, the MC ELBO, RE and the MC KL over ``n_samples`` draws z ∼ q(z|x) (see the
    module doc). ``components``: the prior's, computed once by the caller (else here, once).
    ``first_index``: the index of x[0] in the test set (it seeds the images' generators)."""
    device = x.device
    comps = model.prior.components() if components is None else components
    dim = comps.mu.shape[-1]
    prior_mu = comps.mu.reshape(-1, dim)  # (C, D)
    prior_logvar = comps.logvar.reshape(-1, dim)  # (C, D)
    prior_log_w = comps.log_w.reshape(-1)  # (C,)
    pi, log_pi = model.pi, model.log_pi
    budget = memory_mb if device.type == "cuda" else min(memory_mb, CPU_CHUNK_MB)
    n_img, s_chunk = plan_chunks(n_samples, budget, floats_per_pair(model, prior_log_w.numel()))
    out = {k: torch.empty(x.shape[0], dtype=torch.float64) for k in ("ll", "elbo", "re", "kl")}
    log_s = math.log(n_samples)
    bar = None
    if progress:
        from tqdm import tqdm  # lazy: only `gmmpvae train` shows bars

        bar = tqdm(total=x.shape[0], unit="image", desc="evaluate", dynamic_ncols=True)
    for i0 in range(0, x.shape[0], n_img):
        i1 = min(x.shape[0], i0 + n_img)
        xb, mub, lvb = x[i0:i1], mu[i0:i1], logvar[i0:i1]  # (b, P), (b, M, D)
        z_all = torch.stack([
            posterior_samples(mub[j], lvb[j], pi, n_samples,
                              image_generator(seed, first_index + i0 + j, device))
            for j in range(i1 - i0)
        ], dim=1)  # (S, b, D)
        log_px = torch.empty(n_samples, i1 - i0, device=device)  # (S, b)
        log_pz = torch.empty_like(log_px)
        log_qz = torch.empty_like(log_px)
        for s0 in range(0, n_samples, s_chunk):
            z = z_all[s0 : s0 + s_chunk]  # (s, b, D)
            log_px[s0 : s0 + s_chunk] = model.log_px_given_z(xb, z)
            log_pz[s0 : s0 + s_chunk] = log_mixture_diag_flat(z, prior_mu, prior_logvar,
                                                              prior_log_w)
            log_qz[s0 : s0 + s_chunk] = log_mixture_diag(z, mub, lvb, log_pi)
        log_px, log_pz, log_qz = log_px.double(), log_pz.double(), log_qz.double()
        log_w = log_px + log_pz - log_qz  # (S, b)
        out["ll"][i0:i1] = (torch.logsumexp(log_w, dim=0) - log_s).cpu()
        out["elbo"][i0:i1] = log_w.mean(0).cpu()
        out["re"][i0:i1] = (-log_px.mean(0)).cpu()
        out["kl"][i0:i1] = (log_qz - log_pz).mean(0).cpu()
        if bar is not None:
            bar.update(i1 - i0)
    if bar is not None:
        bar.close()
    return out


@torch.inference_mode()
def encode_all(model: nn.Module, x: Tensor, components: Any,
               matching: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mu, logvar (N, M, D) of q(z|x), the bound U(x) and U_lse(x) (N,) (float64, CPU), in
    batches; both bounds from one all-pairs KL matrix per batch."""
    mus, logvars, bounds, lses = [], [], [], []
    for start in range(0, x.shape[0], ENCODE_BATCH):
        mu, logvar = model.encode(x[start : start + ENCODE_BATCH])
        mus.append(mu)
        logvars.append(logvar)
        u = model.prior.kl_bounds(mu, logvar, model.log_pi, components, (matching, "lse"))
        bounds.append(u[matching].double().cpu())
        lses.append(u["lse"].double().cpu())
    return torch.cat(mus), torch.cat(logvars), torch.cat(bounds), torch.cat(lses)


@torch.inference_mode()
def evaluate(model: nn.Module, data: Any, is_samples: int, memory_mb: int,
             seed: int, progress: bool = False) -> Evaluation:
    """Evaluate ``model`` (its current weights) on ``data.test`` (or on an (N, P) tensor):
    per-image RE, KL bound, MC KL, bound ELBO, MC ELBO and IS log-likelihood (module doc).
    ``progress``: a tqdm bar over the test images."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = (data.test if hasattr(data, "test") else data).to(device)
    matching = bound_matching(model)
    comps = model.prior.components()  # once per evaluation
    mu, logvar, kl_bound, kl_lse = encode_all(model, x, comps, matching)
    sampled = importance_sampling(model, x, mu, logvar, is_samples, memory_mb, seed, comps,
                                  progress=progress)
    model.train(was_training)
    re = sampled["re"]
    return Evaluation(
        re=re, kl_bound=kl_bound, kl_mc=sampled["kl"], kl_lse=kl_lse, elbo_bound=-(re + kl_bound),
        elbo_mc=sampled["elbo"], log_likelihood=sampled["ll"], matching=matching,
        is_samples=is_samples, seconds=time.perf_counter() - start,
    )
