"""Mixed precision: only the networks run in bf16/tf32; densities, loss and Adam stay float32;
bf16 trains the same model as fp32 (real data)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from models import precision as precision_module
from models.config import ModelConfig, TrainConfig, TrialConfig
from models.data import load_dataset
from models.evaluation import evaluate
from models.precision import (
    NATIVE_BF16_FLAGS,
    PrecisionError,
    bf16_refusal,
    check_precision,
    cpu_flags,
    model_precision,
    network_scope,
    set_precision,
)
from models.training import train
from models.vae import GMMpVAE


def tiny_model(**changes) -> GMMpVAE:
    torch.manual_seed(0)
    fields = dict(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=32)
    fields.update(changes)
    return GMMpVAE(ModelConfig(**fields))


# ----------------------------------------------------------------------------------------------
# Configuration


def test_precision_field_is_validated():
    assert TrainConfig().precision == "fp32" and TrainConfig().compile is False
    with pytest.raises(ValueError, match=r"precision='fp16' is invalid: expected one of fp32"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="tf32 needs a CUDA device"):
        TrainConfig(precision="tf32", device="cpu")
    TrainConfig(precision="tf32", device="auto")  # decided at trial start
    TrainConfig(precision="tf32", device="cuda:1")
    with pytest.raises(ValueError, match="compile='yes' is invalid: expected true or false"):
        TrainConfig(compile="yes")


def test_tf32_off_cuda_is_refused_at_trial_start_in_one_line(tmp_path):
    with pytest.raises(PrecisionError) as info:
        check_precision("tf32", torch.device("cpu"))
    assert "\n" not in str(info.value) and "use fp32 or bf16" in str(info.value)
    if torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA here")
    from models.trial import run_trial

    cfg = TrialConfig(ModelConfig(image_shape=(8, 8), K=5, latent_dim=4, hidden_dim=16),
                      TrainConfig(precision="tf32", device="auto", max_epochs=1))
    with pytest.raises(PrecisionError, match="needs a CUDA device"):
        run_trial(cfg, tmp_path / "t")
    assert not (tmp_path / "t").exists()  # refused before anything is written


def test_set_precision_reaches_encoder_and_decoder_only():
    model = set_precision(tiny_model(), "bf16")
    assert model.encoder.precision == model.decoder.precision == "bf16"
    assert model_precision(model) == "bf16"
    assert model_precision(set_precision(model, "fp32")) == "fp32"
    with pytest.raises(PrecisionError):
        set_precision(model, "half")


# ----------------------------------------------------------------------------------------------
# Where bf16 is used, and where it is not


class _Dtypes(TorchFunctionMode):
    """Records (function name, dtype of each tensor it returned) for every torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, torch.dtype]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, tuple | list) else (out,)
        name = getattr(func, "__name__", str(func))
        self.calls += [(name, o.dtype) for o in outs if isinstance(o, torch.Tensor)]
        return out


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_bf16_runs_the_networks_in_bf16_and_every_density_in_float32(arch):
    model = set_precision(tiny_model(arch=arch), "bf16")
    x = torch.bernoulli(torch.full((6, 64), 0.4))
    with _Dtypes() as seen:
        terms = model(x, 0.5)
        reports = terms.reports()
    bf16 = {name for name, dtype in seen.calls if dtype == torch.bfloat16}
    names = {name for name, _ in seen.calls}
    assert {"logsumexp", "matmul", "binary_cross_entropy_with_logits"} <= names
    assert "linear" in bf16 and (arch == "mlp" or "conv2d" in bf16)  # autocast is on
    for name, dtype in seen.calls:  # densities: logsumexp and the pairwise matmuls
        if name in ("logsumexp", "__matmul__", "matmul", "binary_cross_entropy_with_logits"):
            assert dtype == torch.float32, name
    mu, logvar = model.encode(x)
    params = model.decoder(mu[:, 0], None)
    for t in (terms.loss, terms.re, terms.kl, *reports.values(), mu, logvar, params):
        assert t.dtype == torch.float32
    assert torch.isfinite(terms.loss)


def test_bf16_is_bf16_rounding_of_the_fp32_networks_not_something_else():
    model = tiny_model(hidden_dim=64)
    x = torch.bernoulli(torch.full((32, 64), 0.4))
    with torch.no_grad():
        mu32, _ = model.encode(x)
        mu16, _ = set_precision(model, "bf16").encode(x)
    err = float((mu16 - mu32).abs().max() / mu32.abs().max())
    assert 0 < err < 0.05  # different (bf16 products) but only by bf16's rounding (2^-8)


def test_network_scope_is_a_no_op_for_fp32_and_tf32_off_cuda():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    for precision in ("fp32", "tf32"):
        with network_scope(precision, "cpu"):
            assert torch.equal(a @ b, a @ b) and (a @ b).dtype == torch.float32
    with network_scope("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16


def test_bf16_step_keeps_weights_gradients_and_adam_state_in_float32():
    model = set_precision(tiny_model(), "bf16")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.bernoulli(torch.full((6, 64), 0.4))
    model(x, 1.0).loss.backward()
    optimizer.step()
    for p in model.parameters():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32
        state = optimizer.state[p]
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32


def test_evaluation_follows_the_model_precision_with_float64_weights():
    model = tiny_model().eval()
    x = torch.bernoulli(torch.full((5, 64), 0.4))
    fp32 = evaluate(model, x, 200, 64, seed=1)
    bf16 = evaluate(set_precision(model, "bf16"), x, 200, 64, seed=1)
    assert fp32.log_likelihood.dtype == bf16.log_likelihood.dtype == torch.float64
    diff = (bf16.log_likelihood - fp32.log_likelihood).abs()
    # the same samples' weights through bf16 networks: close (≪ 1 nat here), not equal
    assert 0 < float(diff.max()) < 0.5
    assert torch.all(bf16.log_likelihood >= bf16.elbo_mc - 1e-9)  # Jensen, same samples


# ----------------------------------------------------------------------------------------------
# bf16 on a CPU without native bf16 arithmetic is refused where the trial runs

X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_BF16 = X86_AVX2.replace("avx2 fma", "avx2 fma avx512f avx512_bf16")
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_cpu_flags_are_read_from_cpuinfo_text():
    assert cpu_flags(X86_AVX2) == frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
    assert "avx512_bf16" in cpu_flags(X86_BF16) and "bf16" in cpu_flags(ARM_BF16)
    assert cpu_flags("processor\t: 0\n") is None
    here = cpu_flags()  # this machine's /proc/cpuinfo (None off Linux)
    assert here is None or "fpu" in here or "fp" in here


def test_bf16_is_refused_without_native_flags_with_the_measured_ratio():
    line = bf16_refusal(cpu_flags(X86_AVX2))  # the real product is measured here
    assert line is not None and "\n" not in line
    assert line.startswith("precision='bf16' is refused on this CPU: it has no native bf16")
    ratio = float(line.split("matrix product took ")[1].split("x the float32")[0])
    assert ratio > 0 and 'use precision = "fp32"' in line
    with pytest.raises(PrecisionError, match="is refused on this CPU"):
        check_precision("bf16", torch.device("cpu"), bf16_check=lambda: line)
    check_precision("bf16", torch.device("cpu"), bf16_check=lambda: None)


def test_bf16_is_accepted_with_native_flags_without_measuring(tmp_path, monkeypatch):
    def never() -> float:
        raise AssertionError("measured although the flags decide")

    for text in (X86_BF16, ARM_BF16):
        assert bf16_refusal(cpu_flags(text), measure=never) is None
    # no /proc/cpuinfo (not Linux): the measured ratio alone decides
    monkeypatch.setattr(precision_module, "CPUINFO", tmp_path / "no-cpuinfo")
    assert cpu_flags() is None
    assert bf16_refusal(measure=lambda: 1.0) is None
    assert "its flags cannot be read" in bf16_refusal(measure=lambda: 5.0)


def test_this_machine_is_judged_by_its_own_flags():
    flags = cpu_flags()
    native = flags is not None and any(f in flags for f in NATIVE_BF16_FLAGS)
    line = precision_module.host_bf16_refusal()
    assert (line is None) == native or flags is None


def test_the_trial_refuses_bf16_before_writing_anything(tmp_path, monkeypatch):
    from models.trial import run_trial

    refusal = bf16_refusal(cpu_flags(X86_AVX2), measure=lambda: 11.4)
    monkeypatch.setattr(precision_module, "host_bf16_refusal", lambda: refusal)
    cfg = TrialConfig(ModelConfig(image_shape=(8, 8), K=5, latent_dim=4, hidden_dim=16),
                      TrainConfig(precision="bf16", device="cpu", max_epochs=1))
    with pytest.raises(PrecisionError, match=r"took 11\.4x the float32 time"):
        run_trial(cfg, tmp_path / "t")
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


# ----------------------------------------------------------------------------------------------
# On the training device (CUDA when present)


def test_bf16_training_on_the_device(test_device, tmp_path, monkeypatch):
    from models.trial import run_trial

    # numerics, not speed: run even on a CPU that would refuse bf16 (tested below)
    monkeypatch.setattr(precision_module, "host_bf16_refusal", lambda: None)
    data = load_dataset("digits", device=test_device, max_train=200, max_test=40)
    cfg = TrialConfig(ModelConfig(image_shape=(8, 8), M=2, K=5, latent_dim=4, hidden_dim=32),
                      TrainConfig(dataset="digits", max_epochs=2, warmup_epochs=1,
                                  is_samples=50, precision="bf16", device=str(test_device),
                                  max_train_examples=200, max_test_examples=40))
    metrics = run_trial(cfg, tmp_path / "t", data=data)
    assert math.isfinite(metrics["test_ll"]) and metrics["epochs_run"] == 2
    if test_device.type == "cuda":
        assert metrics["device"].startswith("cuda:") and metrics["gpu_memory_peak_mb"] > 0
    else:
        assert metrics["device"] == "cpu" and metrics["gpu_memory_peak_mb"] is None
    assert metrics["compiled"] is False


# ----------------------------------------------------------------------------------------------
# Evidence on real data: bf16 trains the same model


def frey_config(precision: str, seed: int = 0) -> TrialConfig:
    model = ModelConfig(arch="mlp", likelihood="logistic", image_shape=(28, 20), M=2, K=50,
                        latent_dim=20, hidden_dim=200)
    return TrialConfig(model, TrainConfig(dataset="frey", max_epochs=4, warmup_epochs=2,
                                          patience=10, seed=seed, precision=precision,
                                          device="cpu"))


def test_bf16_and_fp32_validation_curves_agree_on_frey_faces(shared_datasets, monkeypatch):
    monkeypatch.setattr(precision_module, "host_bf16_refusal", lambda: None)  # numerics only
    data = load_dataset("frey", shared_datasets)
    runs = {"fp32": frey_config("fp32"), "bf16": frey_config("bf16"),
            "fp32 seed 1": frey_config("fp32", seed=1)}
    curves = {name: torch.tensor([row["val_loss"] for row in train(cfg, data).history])
              for name, cfg in runs.items()}
    fp32, bf16, other_seed = curves["fp32"], curves["bf16"], curves["fp32 seed 1"]
    assert fp32[-1] < fp32[0] - 500  # it learns (≈ 3,870 → 2,790 nats per image)
    rel = (bf16 - fp32).abs() / fp32.abs()
    seed_rel = (other_seed - fp32).abs() / fp32.abs()
    # Same seed, same batches: the curves differ by the networks' rounding only. Measured:
    # 0.003%, 0.007%, 0.4%, 1.2% (the runs drift apart as training goes on); another seed
    # moves them by 1.6%, 5.9%, 5.8%, 2.6% (mean 4%).
    assert float(rel.max()) < 0.03 and float(rel.mean()) < 0.01
    assert float(rel.mean()) < 0.5 * float(seed_rel.mean())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_epoch_of_batches_never_synchronises_with_the_host(test_device, precision):
    if test_device.type != "cuda":
        pytest.skip("host synchronisation is a CUDA notion (torch.cuda.set_sync_debug_mode)")
    from models.step import TrainStep
    from models.training import epoch_batches

    data = load_dataset("digits", device=test_device, max_train=300, max_test=20)
    model = set_precision(tiny_model().to(test_device), precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator(device=test_device).manual_seed(0)
    step = TrainStep(model)
    epoch_batches(step, optimizer, data, 100, generator, 1.0, test_device)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        stats, sizes = epoch_batches(step, optimizer, data, 100, generator, 1.0, test_device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert sizes == [100, 100, 100] and torch.isfinite(stats.cpu()).all()
