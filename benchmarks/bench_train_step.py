"""Time one GMMpVAE training step (forward + backward + Adam) and its KL term; print JSON.

For the mlp architecture (latent 40, hidden 300, 28×28 Bernoulli images, batch 100) with
M ∈ {1, 2, 3} and K ∈ {100, 500}, on the current device:

- ``step_ms``: median wall time of a full training step of `models.vae.GMMpVAE` with the
  greedy bound in the loss (the detached optimal bound and MC KL of `LossTerms` are computed
  only when read, so not here); ``step_ms_min``: the fastest step, least disturbed by other
  processes on shared cores (likewise ``kl_ms_min``, ``vampprior_style_ms_min``);
- ``kl_ms`` / ``kl_share``: the KL term alone — `GMMpVAE.kl_terms` for the greedy bound,
  forward and backward, on leaf copies of that step's (mu, logvar) and encoded pseudo-inputs —
  timed separately, divided by ``step_ms``. The pseudo-inputs' encoder pass is network work
  and not counted in it; ``report_ms``: reading the three detached KLs once (all estimators);
- ``loop_step_ms`` / ``loop_ratio``: the same step with the greedy bound computed by a plain
  Python loop over (batch item, pseudo-input) pairs (fewer steps; no detached reporting terms);
- ``vampprior_style_ms`` (M = 1 only): the same networks with VampPrior's reference KL — the
  pseudo-inputs as a K×K identity-matrix product, log p(z) on broadcast (B, K, D) tensors,
  a single-sample MC KL — to compare with the ≈ 30 ms per step of VampPrior's code.

Usage: python benchmarks/bench_train_step.py [--steps 30] [--device auto|cpu|cuda] [--quick]
(JSON on stdout, progress on stderr; the Python loop is slow: ~10 s to minutes per step.)

Precision mode (``--precisions fp32 bf16 [tf32]``, `bench_precisions`): the training step as
the trainer runs it (`models.step.TrainStep` + fused Adam) for every arch × M × K asked
(default mlp, M ∈ {1, 3}, K ∈ {100, 500}), per precision, eager and/or compiled
(``--compile no|yes|both``). Variants are timed interleaved — ``--repeats`` rounds, each
timing ``--steps`` steps of every variant in turn (fp32, bf16, fp32, bf16, …) — so that load
from other processes hits all of them alike. Reported per variant: the median and minimum
step over all rounds; per variant against the fp32 eager step (our baseline): ``speedup``,
the median over rounds of the ratio of the two variants' round medians (the ratio of
neighbours in time), and ``speedup_of_medians``. On a CPU also ``cpu_ms`` and ``speedup_cpu``:
the same from the process's CPU time (``time.process_time``), which other processes on shared
cores inflate far less than wall time (with ``--threads 1`` it is the step's own compute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from models.config import ModelConfig
from models.distributions import log_normal_diag, sample_stratified
from models.kl import gaussian_kl, greedy_matching, matched_bound
from models.precision import configure_device, set_precision
from models.priors import PriorComponents
from models.step import TrainStep
from models.vae import GMMpVAE

BATCH = 100
IMAGE_SHAPE = (28, 28)
LATENT = 40


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(
    fn: Callable[[], object], steps: int, device: torch.device, warmup: int = 2
) -> tuple[float, float]:
    """(median, minimum) milliseconds of ``fn`` over ``steps`` calls after ``warmup`` calls.
    The minimum is the figure least disturbed by other processes on shared cores."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def _model(n_comp: int, k: int, device: torch.device) -> GMMpVAE:
    cfg = ModelConfig(
        arch="mlp", M=n_comp, K=k, latent_dim=LATENT, image_shape=IMAGE_SHAPE, kl_estimator="greedy"
    )
    return GMMpVAE(cfg).to(device)


def _step(model: GMMpVAE, optimizer: torch.optim.Optimizer, loss_fn: Callable[[], Tensor]):
    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    return run


def _kl_only(model: GMMpVAE, x: Tensor) -> Callable[[], None]:
    """The loss's KL term (forward and backward) on leaf copies of one step's inputs."""
    with torch.no_grad():
        mu, logvar = model.encode(x)
        comps = model.prior.components()
    mu, logvar = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    comps = PriorComponents(*(t.clone().requires_grad_() for t in comps))
    z = sample_stratified(mu.detach(), logvar.detach()).transpose(0, 1)  # (M, B, D)

    estimator = model.config.kl_estimator

    def run() -> None:
        model.kl_terms(mu, logvar, z, comps, (estimator,))[estimator].mean().backward()

    return run


def _loop_greedy_bound(mu: Tensor, logvar: Tensor, comps: PriorComponents, log_pi: Tensor):
    """U(x) with a Python loop over every (image, pseudo-input) pair: (B,)."""
    rows = []
    for b in range(mu.shape[0]):
        row = []
        for k in range(comps.mu.shape[0]):
            kl = gaussian_kl(  # (M, M)
                mu[b, :, None], logvar[b, :, None], comps.mu[k, None], comps.logvar[k, None]
            )
            row.append(matched_bound(kl, log_pi, log_pi, greedy_matching(kl, log_pi, log_pi)))
        rows.append(torch.stack(row).mean())
    return torch.stack(rows)


def _loop_loss(model: GMMpVAE, x: Tensor) -> Callable[[], Tensor]:
    def loss() -> Tensor:
        mu, logvar = model.encode(x)
        z = sample_stratified(mu, logvar).transpose(0, 1)  # (M, B, D)
        re = -(model.pi[:, None] * model.log_px_given_z(x, z)).sum(0)
        kl = _loop_greedy_bound(mu, logvar, model.prior.components(), model.log_pi)
        return (re + kl).mean()

    return loss


def _vampprior_style_loss(model: GMMpVAE, x: Tensor, identity_map: Tensor) -> Callable[[], Tensor]:
    """VampPrior's reference computation (M = 1): pseudo-inputs = hardtanh(W · I_K), log p(z)
    on a broadcast (B, K, D) tensor, KL = log q(z|x) − log p(z) at one sample."""
    k = identity_map.shape[0]
    eye = torch.eye(k, device=x.device)

    def loss() -> Tensor:
        mu, logvar = model.encode(x)  # (B, 1, D)
        mu, logvar = mu[:, 0], logvar[:, 0]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, D)
        re = -model.log_px_given_z(x, z)
        pseudo = F.hardtanh(eye @ identity_map, 0.0, 1.0)  # (K, P), the K×K product
        mu_p, logvar_p = model.encoder(pseudo)  # (K, 1, D)
        log_p_k = log_normal_diag(z[:, None], mu_p[None, :, 0], logvar_p[None, :, 0])  # (B, K)
        log_p = torch.logsumexp(log_p_k - math.log(k), dim=-1)
        kl = log_normal_diag(z, mu, logvar) - log_p
        return (re + kl).mean()

    return loss


def bench_config(
    n_comp: int, k: int, device: torch.device, steps: int, loop_steps: int, fused: bool = False
) -> dict[str, object]:
    torch.manual_seed(0)
    model = _model(n_comp, k, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, fused=fused or None)
    x = torch.bernoulli(torch.full((BATCH, model.config.n_pixels), 0.3, device=device))
    step_ms, step_min = _time(_step(model, optimizer, lambda: model(x).loss), steps, device)
    kl_ms, kl_min = _time(_kl_only(model, x), steps, device)
    terms = model(x)
    report_ms, _ = _time(terms.reports, steps, device)
    row: dict[str, object] = {
        "M": n_comp,
        "K": k,
        "step_ms": round(step_ms, 2),
        "step_ms_min": round(step_min, 2),
        "kl_ms": round(kl_ms, 2),
        "kl_ms_min": round(kl_min, 2),
        "kl_share": round(kl_ms / step_ms, 3),
        "kl_share_min": round(kl_min / step_min, 3),
        "report_ms": round(report_ms, 2),
    }
    if loop_steps > 0:
        loop_ms, _ = _time(
            _step(model, optimizer, _loop_loss(model, x)), loop_steps, device, warmup=0
        )
        row["loop_step_ms"] = round(loop_ms, 1)
        row["loop_ratio"] = round(loop_ms / step_ms, 1)
    if n_comp == 1:
        identity_map = torch.nn.Parameter(model.prior.pseudo_inputs.detach().clone())
        ref = torch.optim.Adam([*model.parameters(), identity_map], lr=5e-4, fused=fused or None)
        ref_loss = _vampprior_style_loss(model, x, identity_map)
        ref_ms, ref_min = _time(_step(model, ref, ref_loss), steps, device)
        row["vampprior_style_ms"] = round(ref_ms, 2)
        row["vampprior_style_ms_min"] = round(ref_min, 2)
    return row


def _variant_step(arch: str, n_comp: int, k: int, precision: str, compiled: bool,
                  device: torch.device) -> tuple[Callable[[], None], TrainStep]:
    """One training step of the trainer (TrainStep + fused Adam) on a fixed batch."""
    torch.manual_seed(0)
    configure_device(device)  # as a trial does: fp32 is strict IEEE on CUDA (no TF32)
    cfg = ModelConfig(arch=arch, M=n_comp, K=k, latent_dim=LATENT, image_shape=IMAGE_SHAPE)
    model = set_precision(GMMpVAE(cfg).to(device), precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)
    step = TrainStep(model, compile=compiled)
    x = torch.bernoulli(torch.full((BATCH, cfg.n_pixels), 0.3, device=device))

    def run() -> None:
        step(x, 1.0)
        optimizer.step()

    return run, step


def bench_precisions(device: torch.device, precisions: list[str], compile_modes: list[bool],
                     archs: list[str], ms: list[int], ks: list[int], steps: int,
                     repeats: int) -> list[dict[str, object]]:
    """Interleaved timing of every precision × compile variant per (arch, M, K)."""
    rows: list[dict[str, object]] = []
    for arch in archs:
        for n_comp in ms:
            for k in ks:
                variants = {}
                for compiled in compile_modes:
                    for precision in precisions:
                        name = precision + ("+compile" if compiled else "")
                        run, step = _variant_step(arch, n_comp, k, precision, compiled, device)
                        start = time.perf_counter()
                        for _ in range(3):  # warm-up; compiles a compiled variant
                            run()
                        _sync(device)
                        variants[name] = {"run": run, "step": step, "times": [], "rounds": [],
                                          "cpu": [], "cpu_rounds": [],
                                          "warmup_s": time.perf_counter() - start}
                for _ in range(repeats):
                    for v in variants.values():
                        times, cpu = [], []
                        for _ in range(steps):
                            _sync(device)
                            start, cpu_start = time.perf_counter(), time.process_time()
                            v["run"]()
                            _sync(device)
                            times.append(time.perf_counter() - start)
                            cpu.append(time.process_time() - cpu_start)
                        v["times"] += times
                        v["rounds"].append(statistics.median(times))
                        v["cpu"] += cpu
                        v["cpu_rounds"].append(statistics.median(cpu))
                base = variants.get("fp32")
                for name, v in variants.items():
                    row: dict[str, object] = {
                        "arch": arch, "M": n_comp, "K": k, "variant": name,
                        "compiled": v["step"].is_compiled,
                        "compile_fallback": v["step"].fallback_reason,
                        "step_ms": round(1e3 * statistics.median(v["times"]), 2),
                        "step_ms_min": round(1e3 * min(v["times"]), 2),
                        "warmup_s": round(v["warmup_s"], 1),
                    }
                    if base is not None:
                        ratios = [b / r for b, r in zip(base["rounds"], v["rounds"], strict=True)]
                        row["speedup"] = round(statistics.median(ratios), 3)
                        row["speedup_rounds"] = [round(r, 3) for r in ratios]
                        row["speedup_of_medians"] = round(
                            statistics.median(base["times"]) / statistics.median(v["times"]), 3)
                    if device.type == "cpu":
                        row["cpu_ms"] = round(1e3 * statistics.median(v["cpu"]), 2)
                        if base is not None:
                            ratios = [b / r for b, r in zip(base["cpu_rounds"], v["cpu_rounds"],
                                                            strict=True)]
                            row["speedup_cpu"] = round(statistics.median(ratios), 3)
                    rows.append(row)
                    print(f"done {arch} M={n_comp} K={k} {name}: {row}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loop-steps", type=int, default=1, help="timed steps of the loop")
    parser.add_argument("--fused-adam", action="store_true", help="Adam(fused=True)")
    parser.add_argument("--quick", action="store_true", help="5 steps; loop at M=1, K=100 only")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16", "tf32"),
                        help="precision mode: compare these (interleaved; see the module doc)")
    parser.add_argument("--compile", choices=("no", "yes", "both"), default="no",
                        help="precision mode: eager, compiled, or both")
    parser.add_argument("--archs", nargs="+", default=["mlp"], choices=("mlp", "cnn", "pixel"))
    parser.add_argument("--Ms", nargs="+", type=int, default=[1, 3])
    parser.add_argument("--Ks", nargs="+", type=int, default=[100, 500])
    parser.add_argument("--repeats", type=int, default=5, help="precision mode: rounds")
    args = parser.parse_args(argv)
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    torch.set_num_threads(args.threads)
    steps = min(args.steps, 5) if args.quick else args.steps
    if args.precisions:
        if "fp32" not in args.precisions:
            parser.error("--precisions must include fp32, the baseline of every ratio")
        load = [round(v, 2) for v in os.getloadavg()]
        modes = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
        rows = bench_precisions(device, args.precisions, modes, args.archs, args.Ms, args.Ks,
                                steps, args.repeats)
        print(json.dumps({
            "benchmark": "train_step_precision", "device": str(device),
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor()),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_average_before": load,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "steps_per_round": steps, "rounds": args.repeats, "batch": BATCH,
            "baseline": "fp32 eager step (TrainStep + fused Adam)", "results": rows,
        }, indent=2))
        return

    load_before = [round(v, 2) for v in os.getloadavg()]
    results = []
    for n_comp in (1, 2, 3):
        for k in (100, 500):
            loop_steps = 0 if args.quick and (n_comp, k) != (1, 100) else args.loop_steps
            results.append(bench_config(n_comp, k, device, steps, loop_steps, args.fused_adam))
            print(f"done M={n_comp} K={k}: {results[-1]}", file=sys.stderr)
    by_key = {(r["M"], r["K"]): r for r in results}
    report = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        ),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "adam": "fused" if args.fused_adam else "default (foreach)",
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "steps": steps,
        "batch": BATCH,
        "latent_dim": LATENT,
        "kl_share_method": "forward+backward of the KL term alone, timed separately, / step",
        "results": results,
        "checks": {
            "M1_K500_step_ms": by_key[1, 500]["step_ms"],
            "M1_K500_step_ms_min": by_key[1, 500]["step_ms_min"],
            "M3_over_M1_K500": round(by_key[3, 500]["step_ms"] / by_key[1, 500]["step_ms"], 2),
            "M3_over_M1_K500_min": round(
                by_key[3, 500]["step_ms_min"] / by_key[1, 500]["step_ms_min"], 2
            ),
            "M3_K500_kl_share": by_key[3, 500]["kl_share"],
            "M3_K500_kl_share_min": by_key[3, 500]["kl_share_min"],
            "vampprior_style_over_ours_M1_K500": round(
                by_key[1, 500]["vampprior_style_ms"] / by_key[1, 500]["step_ms"], 2
            ),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
