"""Numerical precision of a trial (``TrainConfig.precision``): where lower precision is allowed.

Only the networks' matrix products and convolutions change precision; everything that decides
the value of a log-density stays IEEE float32:

- ``fp32`` (default): strict float32 everywhere. On CUDA, TF32 is switched off for matmuls
  and cuDNN convolutions (`configure_device`), since PyTorch lets cuDNN use TF32 by default.
- ``bf16``: the encoder's and decoder's forward passes (`models.networks.Encoder` and
  `models.networks.Decoder`, which call `network_scope`) run under ``torch.autocast`` with
  bfloat16, on CPU and CUDA; their outputs — q(z|x)'s μ and log σ², the likelihood's raw
  parameters — are cast back to float32 before they leave the network. Weights, gradients and
  Adam's moments are float32 (autocast casts copies of the weights for each product).
- ``tf32`` (CUDA only): the same products in TF32 (float32 storage, 10-bit-mantissa inputs,
  float32 accumulation), switched on around the networks' forward passes only.

bf16 on a CPU without native bf16 arithmetic is refused where the trial runs (`check_precision`
at trial start, `bf16_refusal`): without AVX-512 BF16 or AMX (x86) or the Arm ``bf16`` feature,
PyTorch emulates bf16 products and they are far slower than float32 (measured on this
project's 2-core AVX2-only EPYC, one thread: a [600×784]·[784×300] product 1.9 GFLOP/s in
bf16 vs 67 in fp32; the M = 1, K = 500 training step 11× slower). The CPU's feature flags
(`cpu_flags`, from /proc/cpuinfo) decide; the refusal line gives a measured ratio of that
product's time in bf16 and fp32 (`bf16_matmul_ratio`, ≈ 0.2 s). Where the flags cannot be
read (not Linux), the measured ratio alone decides (refused above `MAX_BF16_SLOWDOWN`). The
study's validation (`gmmpvae run`, ``--dry-run``) calls `bf16_refusal` for the driver's
machine when the trials run there.

Float32 in every mode: log N and the mixture log-densities (models.distributions, with their
own matrix products), logsumexp, the KL bounds and the Monte Carlo KL (models.kl, priors),
the likelihood log p(x|z) (models.likelihoods), the sums over pixels and components, the loss,
the optimiser state, and at evaluation the importance weights (accumulated in float64).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from models.config import PRECISIONS


class PrecisionError(ValueError):
    """A precision the device cannot run (tf32 off CUDA, bf16 on a CPU without bf16)."""


# x86: AVX-512 BF16 and AMX-BF16; Arm: the bf16 feature (FEAT_BF16)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
MAX_BF16_SLOWDOWN = 2.0  # without readable flags: refuse bf16 when its product is this slower
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's feature flags (the ``flags`` lines on x86, ``Features`` on Arm) of
    ``cpuinfo`` (default: /proc/cpuinfo's text); None where there is none to read."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags) if flags else None


def bf16_matmul_ratio(repeats: int = 3) -> float:
    """Time of a [600×784]·[784×300] product in bf16 over float32 on this CPU (best of
    ``repeats`` each, after one warm-up)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(600, 784, generator=generator)
    b = torch.rand(784, 300, generator=generator)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        torch.mm(x, y)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(x, y)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a.bfloat16(), b.bfloat16()) / max(best(a, b), 1e-9)


def bf16_refusal(flags: frozenset[str] | None = None,
                 measure: Callable[[], float] = bf16_matmul_ratio) -> str | None:
    """The one line refusing bf16 on this CPU, or None when it has native bf16 arithmetic.
    ``flags``: the CPU's feature flags (default `cpu_flags`); ``measure``: the ratio of a bf16
    to an fp32 product's time (default `bf16_matmul_ratio`)."""
    flags = cpu_flags() if flags is None else flags
    if flags is not None and any(f in flags for f in NATIVE_BF16_FLAGS):
        return None
    ratio = measure()
    if flags is None and ratio <= MAX_BF16_SLOWDOWN:
        return None
    why = ("it has no native bf16 arithmetic (no avx512_bf16, amx_bf16 or bf16 among its "
           "flags in /proc/cpuinfo)" if flags is not None else "its flags cannot be read")
    return (f"precision='bf16' is refused on this CPU: {why}, and a bf16 matrix product "
            f"took {ratio:.1f}x the float32 time here; use precision = \"fp32\" "
            "(bf16 pays off on a GPU or a CPU with AVX-512 BF16 / AMX)")


@functools.cache
def host_bf16_refusal() -> str | None:
    """`bf16_refusal` of this machine, measured once per process."""
    return bf16_refusal()


def check_precision(precision: str, device: torch.device,
                    bf16_check: Callable[[], str | None] | None = None) -> None:
    """Refuse, in one line, a precision ``device`` cannot run: tf32 needs CUDA; bf16 on a CPU
    needs native bf16 arithmetic (``bf16_check``, default `host_bf16_refusal`)."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}"
        )
    if precision == "tf32" and device.type != "cuda":
        raise PrecisionError(
            f"precision='tf32' needs a CUDA device, but this trial runs on {device}: "
            "use fp32 or bf16"
        )
    if precision == "bf16" and device.type == "cpu":
        line = (bf16_check or host_bf16_refusal)()
        if line is not None:
            raise PrecisionError(line)


def configure_device(device: torch.device) -> None:
    """Strict IEEE float32 for float32 matmuls and convolutions on CUDA (TF32 only inside
    `network_scope` of a tf32 trial). Process-wide: a trial owns its process."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"


@contextlib.contextmanager
def _tf32() -> Iterator[None]:
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    matmul.fp32_precision = conv.fp32_precision = "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def network_scope(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The context a network's forward pass runs in: bfloat16 autocast for ``bf16``, TF32
    for ``tf32`` on CUDA, nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "tf32" and device_type == "cuda":
        return _tf32()
    return contextlib.nullcontext()


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    """Give every network of ``model`` (modules with a ``precision`` attribute: the encoder
    and the decoder) the trial's precision; returns ``model``."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}"
        )
    for module in model.modules():
        if hasattr(module, "precision"):
            module.precision = precision
    return model


def model_precision(model: nn.Module) -> str:
    """The precision the model's networks run at (fp32 for a model without networks)."""
    for module in model.modules():
        if hasattr(module, "precision"):
            return module.precision
    return "fp32"
