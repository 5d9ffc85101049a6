"""Benchmark: importance-sampling throughput and seconds per training epoch. Prints JSON.

1. IS throughput (test images × samples per second) of `models.evaluation.evaluate` — batched
   over images and samples, chunked to a memory budget, prior components computed once — against
   VampPrior's method in the same process on the same model: one test image at a time, in
   minibatches of 100 samples, each minibatch re-encoding its 100 copies of x, recomputing the
   prior's components (the encoder on the K pseudo-inputs) and evaluating log p(z) by
   broadcasting (100, K·M, D) (VampPrior's ``calculate_likelihood`` / ``log_p_z``). mlp,
   K = 500, M ∈ {1, 3}, S = 5000 by default; untrained weights (the cost does not depend on
   them). The ratio of the two throughputs is the speed-up.
2. Seconds per training epoch on Fashion-MNIST (50,000 training + 10,000 validation images) for
   mlp, M = 3, K = 500: from ``--data-dir`` (``fashion-mnist/`` or ``fashion_mnist/``) when the
   files are there, else synthetic data of the same size. ``--epoch-fraction F`` (``--quick``:
   0.1) trains on a fraction F of both splits and extrapolates linearly (reported as such).

3. With ``--precisions fp32 bf16 [tf32]``: the IS evaluation (`evaluate`, ``--images`` test
   images, S samples) of the same model at each precision (`models.precision.set_precision`),
   timed interleaved — ``--repeats`` rounds of fp32, bf16, … — reporting per precision the
   median seconds, the speed-up over fp32 (median over rounds of the per-round ratio) and how
   far its per-image log-likelihoods are from fp32's (same samples: the networks' rounding).
   Replaces 1 and 2 in that run.

Usage: python benchmarks/bench_eval.py [--quick] [--epoch-only | --is-only] [--data-dir DIR]
       [--precisions fp32 bf16 --repeats 5 --device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.config import ModelConfig, TrainConfig, TrialConfig  # noqa: E402
from models.distributions import log_mixture_diag, sample_mixture  # noqa: E402
from models.evaluation import evaluate  # noqa: E402

REFERENCE_MINIBATCH = 100
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def model_config(m: int, k: int) -> ModelConfig:
    return ModelConfig(arch="mlp", prior="pseudo_mixture", M=m, K=k, latent_dim=40,
                       hidden_dim=300, image_shape=(28, 28))


def test_images(n: int, data_dir: Path | None) -> tuple[torch.Tensor, str]:
    """n binarised Fashion-MNIST test images when available, else random binary images."""
    if data_dir is not None:
        try:
            from models.data import load_dataset

            return load_dataset("fashion_mnist", data_dir, max_test=n).test, "fashion_mnist"
        except ValueError:
            pass
    gen = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 784), 0.3), generator=gen), "synthetic"


@torch.inference_mode()
def reference_log_likelihood(model: torch.nn.Module, x: torch.Tensor, n_samples: int) -> float:
    """VampPrior's estimator for one image x (P,): minibatches of 100 samples, everything
    (encoder on x, prior components, broadcast log p(z)) recomputed per minibatch."""
    chunks = []
    for _ in range(math.ceil(n_samples / REFERENCE_MINIBATCH)):
        xs = x.expand(REFERENCE_MINIBATCH, -1)  # (100, P)
        mu, logvar = model.encode(xs)  # (100, M, D)
        z = sample_mixture(mu, logvar, model.pi, 1)[0]  # (100, D), one per row
        comps = model.prior.components()  # encoder on the K pseudo-inputs, again
        dim = comps.mu.shape[-1]
        log_pz = log_mixture_diag(z, comps.mu.reshape(-1, dim), comps.logvar.reshape(-1, dim),
                                  comps.log_w.reshape(-1))  # (100, K·M, D) broadcast
        log_px = model.log_px_given_z(xs, z)  # (100,)
        log_qz = model.log_q(z, mu, logvar)  # (100,)
        chunks.append(log_px + log_pz - log_qz)
    log_w = torch.cat(chunks)[:n_samples]
    return float(torch.logsumexp(log_w, 0) - math.log(n_samples))


def bench_is(m: int, k: int, n_samples: int, n_ref: int, n_ours: int, memory_mb: int,
             data_dir: Path | None) -> dict:
    from models.vae import GMMpVAE

    torch.manual_seed(0)
    model = GMMpVAE(model_config(m, k)).eval()
    x, source = test_images(max(n_ref, n_ours), data_dir)
    evaluate(model, x[:2], 50, memory_mb, 0)  # warm-up (allocator, kernels)
    reference_log_likelihood(model, x[0], REFERENCE_MINIBATCH)

    start = time.perf_counter()
    ref_ll = [reference_log_likelihood(model, x[i], n_samples) for i in range(n_ref)]
    ref_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = evaluate(model, x[:n_ours], n_samples, memory_mb, 0)
    our_seconds = time.perf_counter() - start

    ref_rate = n_ref * n_samples / ref_seconds
    our_rate = n_ours * n_samples / our_seconds
    common = min(n_ref, n_ours)
    ll_diff = float((ours.log_likelihood[:common]
                     - torch.tensor(ref_ll[:common], dtype=torch.float64)).abs().mean())
    return {
        "M": m, "K": k, "S": n_samples, "data": source, "memory_mb": memory_mb,
        "reference_images": n_ref, "reference_seconds": round(ref_seconds, 3),
        "reference_seconds_per_image": round(ref_seconds / n_ref, 4),
        "reference_pairs_per_second": round(ref_rate),
        "ours_images": n_ours, "ours_seconds": round(our_seconds, 3),
        "ours_seconds_per_image": round(our_seconds / n_ours, 4),
        "ours_pairs_per_second": round(our_rate),
        "speedup": round(our_rate / ref_rate, 2),
        # both are unbiased-in-p(x) estimators with independent samples: close, not equal
        "mean_abs_ll_difference_nats": round(ll_diff, 4),
    }


def bench_is_precisions(m: int, k: int, n_samples: int, n_images: int, memory_mb: int,
                        data_dir: Path | None, precisions: list[str], repeats: int,
                        device: torch.device) -> dict:
    """Interleaved timing of `evaluate` at each precision on one model (see the module doc)."""
    import statistics

    from models.precision import configure_device, set_precision
    from models.vae import GMMpVAE

    configure_device(device)  # as a trial does: fp32 is strict IEEE on CUDA (no TF32)
    torch.manual_seed(0)
    model = GMMpVAE(model_config(m, k)).to(device).eval()
    x, source = test_images(n_images, data_dir)
    x = x.to(device)
    rounds: dict[str, list[float]] = {p: [] for p in precisions}
    cpu_rounds: dict[str, list[float]] = {p: [] for p in precisions}
    lls: dict[str, torch.Tensor] = {}
    for p in precisions:  # warm-up (allocator, kernels, autocast's first casts)
        evaluate(set_precision(model, p), x[:2], 50, memory_mb, 0)
    for _ in range(repeats):
        for p in precisions:
            set_precision(model, p)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = evaluate(model, x, n_samples, memory_mb, 0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rounds[p].append(time.perf_counter() - start)
            cpu_rounds[p].append(time.process_time() - cpu_start)
            lls[p] = result.log_likelihood
    out = {"M": m, "K": k, "S": n_samples, "images": n_images, "data": source,
           "memory_mb": memory_mb, "weights": "untrained (He initialisation)", "precisions": {}}
    for p in precisions:
        ratios = [b / t for b, t in zip(rounds["fp32"], rounds[p], strict=True)]
        diff = lls[p] - lls["fp32"]
        cpu_ratios = [b / t for b, t in zip(cpu_rounds["fp32"], cpu_rounds[p], strict=True)]
        out["precisions"][p] = {
            "seconds_median": round(statistics.median(rounds[p]), 3),
            "seconds_rounds": [round(t, 3) for t in rounds[p]],
            "speedup": round(statistics.median(ratios), 3),
            "speedup_rounds": [round(r, 3) for r in ratios],
            # CPU time of the process: far less inflated by other processes on shared cores
            "cpu_seconds_median": round(statistics.median(cpu_rounds[p]), 3),
            "speedup_cpu": round(statistics.median(cpu_ratios), 3),
            "mean_ll": round(float(lls[p].mean()), 4),
            "mean_ll_minus_fp32_nats": round(float(diff.mean()), 4),
            "max_abs_ll_minus_fp32_nats": round(float(diff.abs().max()), 4),
        }
    return out


def bench_epoch(fraction: float, data_dir: Path | None, m: int = 3, k: int = 500) -> dict:
    from models.data import Dataset, load_dataset
    from models.training import train

    n_train, n_val = round(50_000 * fraction), round(10_000 * fraction)
    source = "synthetic"
    data = None
    if data_dir is not None:
        try:
            data = load_dataset("fashion_mnist", data_dir, max_train=n_train, max_test=n_val)
            source = "fashion_mnist"
        except ValueError:
            data = None
    if data is None:
        gen = torch.Generator().manual_seed(0)
        grey = torch.rand(n_train + 2 * n_val, 784, generator=gen)
        data = Dataset("fashion_mnist", grey[:n_train], torch.bernoulli(grey[n_train:][:n_val]),
                       torch.bernoulli(grey[n_train + n_val :]), (28, 28), "bernoulli", True)
    cfg = TrialConfig(model_config(m, k),
                      TrainConfig(dataset="fashion_mnist", max_epochs=2, warmup_epochs=100,
                                  device="cpu", max_train_examples=n_train,
                                  max_test_examples=n_val))
    history = train(cfg, data).history
    measured = history[-1]["seconds"]  # the second epoch: no first-call overheads
    return {
        "arch": "mlp", "M": m, "K": k, "data": source, "train_images": n_train,
        "val_images": n_val, "fraction": fraction, "extrapolated": fraction < 1.0,
        "epoch_seconds_measured": round(measured, 3),
        "first_epoch_seconds_measured": round(history[0]["seconds"], 3),
        "seconds_per_epoch_full": round(measured / fraction, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer images (reference 5, ours 20) and epoch fraction 0.1")
    parser.add_argument("--epoch-only", action="store_true", help="only the epoch timing")
    parser.add_argument("--is-only", action="store_true", help="only the IS throughput")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--K", type=int, default=500)
    parser.add_argument("--M", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--reference-images", type=int, default=None)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--epoch-fraction", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--data-dir", type=Path,
                        default=SHARED_DATA if SHARED_DATA.is_dir() else None)
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16", "tf32"),
                        help="compare the IS evaluation at these precisions (interleaved)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of --precisions")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (--precisions)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precisions:
        import os

        if "fp32" not in args.precisions:
            parser.error("--precisions must include fp32, the baseline of every ratio")
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else "cpu" if args.device == "auto" else args.device)
        load = [round(v, 2) for v in os.getloadavg()]
        n_images = args.images or (20 if args.quick else 100)
        report = {
            "benchmark": "is_precision", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device),
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            "load_average_before": load,
            "importance_sampling": [
                bench_is_precisions(m, args.K, args.samples, n_images, args.memory_mb,
                                    args.data_dir, args.precisions, args.repeats, device)
                for m in args.M],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        }
        print(json.dumps(report, indent=2))
        return 0
    n_ref = args.reference_images or (5 if args.quick else 20)
    n_ours = args.images or (20 if args.quick else 100)
    fraction = args.epoch_fraction or (0.1 if args.quick else 1.0)
    report: dict = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "device": "cpu",
    }
    if not args.epoch_only:
        report["importance_sampling"] = [
            bench_is(m, args.K, args.samples, n_ref, n_ours, args.memory_mb, args.data_dir)
            for m in args.M
        ]
    if not args.is_only:
        report["epoch"] = bench_epoch(fraction, args.data_dir, k=args.K)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
