"""The training step: eager, compiled (torch.compile) and the fallback when compiling fails."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from models import step as step_module
from models.config import ModelConfig, TrainConfig, TrialConfig
from models.data import load_dataset
from models.step import CompileFallbackWarning, TrainStep
from models.training import train
from models.vae import GMMpVAE


def tiny_model() -> GMMpVAE:
    torch.manual_seed(0)
    return GMMpVAE(ModelConfig(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=16))


def batch() -> torch.Tensor:
    return torch.bernoulli(torch.full((10, 64), 0.4, dtype=torch.float32),
                           generator=torch.Generator().manual_seed(1))


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_eager_step_is_zero_grad_forward_backward():
    model, x = tiny_model(), batch()
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # stale gradients must not accumulate
    torch.manual_seed(5)
    loss, re, kl = TrainStep(model)(x, 0.5)
    got = grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    terms = model(x, 0.5)
    terms.loss.backward()
    assert torch.equal(loss, terms.loss.detach()) and torch.equal(re, terms.re.detach())
    assert not loss.requires_grad and torch.equal(kl, terms.kl.detach())
    assert all(torch.equal(got[n], p.grad) for n, p in model.named_parameters())


def _failing_compile(fn, **kwargs):
    def compiled(*args, **kw):
        raise RuntimeError("InductorError: no working C++ compiler\nsecond line")
    return compiled


def test_a_failing_compile_warns_once_and_redoes_the_step_eagerly(monkeypatch):
    monkeypatch.setattr(step_module.torch, "compile", _failing_compile)
    model, x = tiny_model(), batch()
    with pytest.warns(CompileFallbackWarning, match="no working C\\+\\+ compiler") as record:
        step = TrainStep(model, compile=True)
        torch.manual_seed(5)
        loss, _, _ = step(x, 1.0)
    assert len(record) == 1 and "second line" not in str(record[0].message)
    assert not step.is_compiled and "RuntimeError" in step.fallback_reason
    got = grads(model)
    torch.manual_seed(5)
    eager_loss, _, _ = TrainStep(model)(x, 1.0)
    assert torch.equal(loss, eager_loss)
    assert all(torch.equal(got[n], p.grad) for n, p in model.named_parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: eager from now on
        step(x, 1.0)


def test_compile_refused_outright_falls_back_too(monkeypatch):
    def refuse(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(step_module.torch, "compile", refuse)
    with pytest.warns(CompileFallbackWarning, match="not supported"):
        step = TrainStep(tiny_model(), compile=True)
    loss, _, _ = step(batch(), 1.0)
    assert torch.isfinite(loss)


def test_an_error_of_the_eager_step_is_still_raised(monkeypatch):
    monkeypatch.setattr(step_module.torch, "compile", _failing_compile)
    model = tiny_model()
    with pytest.warns(CompileFallbackWarning), pytest.raises(RuntimeError, match="shape"):
        TrainStep(model, compile=True)(torch.zeros(3, 7), 1.0)  # wrong image size


def test_training_with_a_failing_compile_completes_and_says_so(monkeypatch):
    monkeypatch.setattr(step_module.torch, "compile", _failing_compile)
    data = load_dataset("digits", max_train=200, max_test=40)
    cfg = TrialConfig(ModelConfig(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=16),
                      TrainConfig(dataset="digits", max_epochs=2, warmup_epochs=1,
                                  compile=True, device="cpu", max_train_examples=200,
                                  max_test_examples=40))
    with pytest.warns(CompileFallbackWarning):
        result = train(cfg, data)
    assert result.compiled is False and result.epochs_run == 2


@pytest.mark.slow  # compiling takes ~30 s of CPU (minutes on loaded shared cores)
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_a_tiny_compiled_step_runs_compiled(test_device):
    model = tiny_model().to(test_device)
    x = batch().to(test_device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        step = TrainStep(model, compile=True)
        losses = [step(x, beta)[0] for beta in (0.5, 1.0)]  # β is a tensor: one graph
    assert step.is_compiled and step.fallback_reason is None
    assert all(torch.isfinite(loss) for loss in losses)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # Compiled code draws its own noise (Inductor's generator), so the losses are not equal
    # to the eager ones; they estimate the same loss: same scale.
    eager = float(TrainStep(model)(x, 1.0)[0])
    assert abs(float(losses[1]) - eager) < 0.2 * abs(eager)
