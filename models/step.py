"""The training step's forward and backward pass, eager or through ``torch.compile``.

`TrainStep(model, compile=...)` is called once per batch: it zeroes the gradients, computes
the loss terms (loss, RE, KL; `models.vae.GMMpVAE.forward`) and back-propagates the loss; the
caller steps the optimiser. With ``compile=True`` the forward pass goes through
``torch.compile`` (Inductor; AOTAutograd compiles its backward). Compiling happens lazily, at
the first call and again when a batch of a new shape arrives (the last, smaller batch of an
epoch), and can fail there — no C++ compiler on a CPU machine, an unsupported op, an old GPU.
Any exception while compiled is therefore caught: one warning line names it, the step is
redone eagerly (gradients zeroed first) and the step stays eager from then on. An error that
the eager step raises too is raised. Only the training step is compiled; validation and
evaluation run eagerly.

Compiled code draws its random numbers differently from eager code (Inductor's own generator
seeded from torch's), so a compiled run is reproducible with itself from a fresh start, not
bit-identical to the eager run of the same seed, and a run resumed from a checkpoint continues
its statistics exactly only in eager mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

StepOutput = tuple[Tensor, Tensor, Tensor]  # loss (scalar), re (B,), kl (B,), with gradient


def loss_terms(model: nn.Module, x: Tensor, beta: float) -> StepOutput:
    """(loss, re, kl) of a batch: the tensors of `LossTerms` a training step needs."""
    terms = model(x, beta)
    return terms.loss, terms.re, terms.kl


class CompileFallbackWarning(RuntimeWarning):
    """torch.compile failed; the training step runs eagerly."""


class TrainStep:
    """zero_grad + forward + backward of one batch; returns detached (loss, re, kl)."""

    def __init__(self, model: nn.Module, compile: bool = False) -> None:
        self.model = model
        self._beta: tuple[float, Tensor] | None = None
        self.compiled: Callable[..., StepOutput] | None = None
        self.fallback_reason: str | None = None
        if compile:
            try:
                self.compiled = torch.compile(loss_terms)
            except Exception as exc:  # e.g. an unsupported Python version: compile() refuses
                self._fall_back(exc)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def _fall_back(self, exc: BaseException) -> None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.fallback_reason = f"{type(exc).__name__}: {first}"[:300]
        self.compiled = None
        warnings.warn(f"torch.compile failed ({self.fallback_reason}); training eagerly",
                      CompileFallbackWarning, stacklevel=3)

    def _run(self, fn: Callable[..., StepOutput], x: Tensor, beta: float) -> StepOutput:
        for p in self.model.parameters():
            p.grad = None
        loss, re, kl = fn(self.model, x, beta)
        loss.backward()
        return loss.detach(), re.detach(), kl.detach()

    def _beta_tensor(self, beta: float, device: torch.device) -> Tensor:
        """β as a 0-dim tensor: a compiled graph would be specialised on a Python float, and
        recompiled for every warm-up epoch's new β. ``torch.full`` fills on the device (no
        host-to-device copy to wait for); one tensor per value of β."""
        if self._beta is None or self._beta[0] != beta or self._beta[1].device != device:
            self._beta = (beta, torch.full((), beta, device=device))
        return self._beta[1]

    def __call__(self, x: Tensor, beta: float) -> StepOutput:
        if self.compiled is not None:
            try:
                return self._run(self.compiled, x, self._beta_tensor(beta, x.device))
            except Exception as exc:  # compiling (lazily, here) failed: eager from now on
                self._fall_back(exc)
        return self._run(loss_terms, x, beta)
