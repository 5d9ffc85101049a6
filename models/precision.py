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

Float32 in every mode: log N and the mixture log-densities (models.distributions, with their
own matrix products), logsumexp, the KL bounds and the Monte Carlo KL (models.kl, priors),
the likelihood log p(x|z) (models.likelihoods), the sums over pixels and components, the loss,
the optimiser state, and at evaluation the importance weights (accumulated in float64).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from models.config import PRECISIONS


class PrecisionError(ValueError):
    """A precision the device cannot run (tf32 off CUDA)."""


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a precision ``device`` cannot run: tf32 needs CUDA."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision={precision!r} is invalid: expected one of {', '.join(PRECISIONS)}"
        )
    if precision == "tf32" and device.type != "cuda":
        raise PrecisionError(
            f"precision='tf32' needs a CUDA device, but this trial runs on {device}: "
            "use fp32 or bf16"
        )


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
