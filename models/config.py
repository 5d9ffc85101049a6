"""Typed, frozen configuration of one GMMpVAE trial.

`ModelConfig` says what the model is (architecture, prior, mixture sizes M and K, weights π);
`TrainConfig` says how it is trained and evaluated. Both are validated when built — a wrong
value raises a ``ValueError`` naming the field, the value given and what is accepted — and both
round-trip through plain dicts (``to_dict`` / ``from_dict``), which is how they travel through
Ray Tune, into checkpoints and into Parquet rows. Field names are also the parameter names of the
search spaces, so a flat dict of both configs (``split_flat``) is a trial's whole description.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Self

ARCHITECTURES = ("mlp", "cnn", "pixel")
PRIORS = ("standard", "pseudo_mixture")
LIKELIHOODS = ("bernoulli", "logistic")
KL_ESTIMATORS = ("greedy", "optimal", "mc", "lse")
PSEUDO_INITS = ("normal", "data")
DATASETS = ("mnist", "fashion_mnist", "omniglot", "frey", "digits")
# Precision of the encoder's and decoder's matrix products (models.precision); every density,
# KL, loss and optimiser state stays float32 whatever the choice. tf32 exists only on CUDA.
PRECISIONS = ("fp32", "bf16", "tf32")
# The ModelConfig fields that follow from the dataset: image shape (H, W) and likelihood. The one
# table of them, read by models.data (loading) and search_spaces (complete configs, no torch).
DATASET_MODEL_FIELDS: dict[str, dict[str, Any]] = {
    "mnist": {"image_shape": [28, 28], "likelihood": "bernoulli"},
    "fashion_mnist": {"image_shape": [28, 28], "likelihood": "bernoulli"},
    "omniglot": {"image_shape": [28, 28], "likelihood": "bernoulli"},
    "frey": {"image_shape": [28, 20], "likelihood": "logistic"},
    "digits": {"image_shape": [8, 8], "likelihood": "bernoulli"},
}
PI_TOLERANCE = 1e-6


def _fail(name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{name}={value!r} is invalid: expected {accepted}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(name, value, "one of " + ", ".join(choices))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}")


def _check_float(name: str, value: Any, low: float, high: float | None = None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value > low and (high is None or value <= high)
    if not ok:
        bound = f"a number in ({low}, {high}]" if high is not None else f"a number > {low}"
        raise _fail(name, value, bound)


class _DictMixin:
    """to_dict / from_dict for a flat frozen dataclass; from_dict rejects unknown keys."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} field(s) {', '.join(unknown)}: "
                f"expected some of {', '.join(sorted(names))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class ModelConfig(_DictMixin):
    """What one GMMpVAE is (docs/MATH.md#model).

    M posterior components with fixed weights ``pi`` (uniform when omitted); K pseudo-inputs for
    the ``pseudo_mixture`` prior (eq. 15/17/20; M = 1 is VampPrior); the KL term of the loss is
    the matched bound with ``greedy`` (eq. 13) or ``optimal`` matching, the Monte Carlo KL, or
    ``lse``, −log (1/K) Σ_k exp(−B_βk) with greedy β (models.kl.pseudo_mixture_lse_bound).
    ``image_shape`` and ``likelihood`` follow from the dataset.
    """

    arch: str = "mlp"
    prior: str = "pseudo_mixture"
    likelihood: str = "bernoulli"
    kl_estimator: str = "greedy"
    M: int = 1
    pi: tuple[float, ...] | None = None
    K: int = 500
    latent_dim: int = 40
    hidden_dim: int = 300
    image_shape: tuple[int, int] = (28, 28)
    pseudo_init: str = "normal"
    pixel_layers: int = 4
    pixel_channels: int = 32

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHITECTURES)
        _check_choice("prior", self.prior, PRIORS)
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _check_choice("pseudo_init", self.pseudo_init, PSEUDO_INITS)
        _check_int("M", self.M, 1)
        _check_int("K", self.K, 1)
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("hidden_dim", self.hidden_dim, 1)
        _check_int("pixel_layers", self.pixel_layers, 1)
        _check_int("pixel_channels", self.pixel_channels, 1)
        shape = self.image_shape
        if (
            not isinstance(shape, tuple | list)
            or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 4 for s in shape)
        ):
            raise _fail("image_shape", shape, "two integers (height, width), each >= 4")
        object.__setattr__(self, "image_shape", tuple(shape))
        pi = self.pi
        if pi is None:
            pi = (1.0 / self.M,) * self.M
        if not isinstance(pi, tuple | list) or len(pi) != self.M:
            raise _fail("pi", self.pi, f"a list of M={self.M} weights summing to 1")
        for p in pi:
            if isinstance(p, bool) or not isinstance(p, int | float) or not p > 0:
                raise _fail("pi", self.pi, "weights that are all > 0 and sum to 1")
        if abs(math.fsum(pi) - 1.0) > PI_TOLERANCE:
            raise _fail("pi", self.pi, f"weights that sum to 1 within {PI_TOLERANCE:g}")
        object.__setattr__(self, "pi", tuple(float(p) for p in pi))

    @property
    def n_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


@dataclass(frozen=True)
class TrainConfig(_DictMixin):
    """How one GMMpVAE is trained and evaluated (the paper's protocol by default, scaled down
    by studies): Adam, batch 100, warm-up β_t = min(1, epoch / warmup_epochs), at most
    ``max_epochs`` with early stopping after ``patience`` epochs without a better validation
    loss, importance-sampled test log-likelihood with ``is_samples`` samples.

    ``precision``: "fp32" (default; strict IEEE float32, TF32 off on CUDA), "bf16" (encoder and
    decoder under bfloat16 autocast) or "tf32" (encoder and decoder matmuls/convolutions in
    TF32; CUDA only: refused here for device="cpu"/"mps", and at trial start when "auto"
    resolves to no GPU). Densities, KLs, the loss and Adam's state are float32 in every case
    (`models.precision`). ``compile``: run the training step through ``torch.compile``, falling
    back to eager (one warning line) where compiling fails."""

    dataset: str = "digits"
    lr: float = 5e-4
    batch_size: int = 100
    max_epochs: int = 5000
    warmup_epochs: int = 200
    patience: int = 100
    seed: int = 0
    is_samples: int = 5000
    eval_memory_mb: int = 512
    max_train_examples: int = 0
    max_test_examples: int = 0
    device: str = "auto"
    data_dir: str | None = None
    precision: str = "fp32"
    compile: bool = False

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_float("lr", self.lr, 0.0, 1.0)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("max_epochs", self.max_epochs, 1)
        _check_int("warmup_epochs", self.warmup_epochs, 0)
        _check_int("patience", self.patience, 1)
        _check_int("seed", self.seed, 0)
        _check_int("is_samples", self.is_samples, 1)
        _check_int("eval_memory_mb", self.eval_memory_mb, 1)
        _check_int("max_train_examples", self.max_train_examples, 0)
        _check_int("max_test_examples", self.max_test_examples, 0)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            raise _fail("device", self.device, "auto, cpu, cuda, cuda:N or mps")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise _fail("data_dir", self.data_dir, "a folder path or null")
        _check_choice("precision", self.precision, PRECISIONS)
        if self.precision == "tf32" and not (
            self.device in ("auto", "cuda") or self.device.startswith("cuda:")
        ):
            raise _fail("precision", self.precision,
                        f"fp32 or bf16 on device={self.device!r} (tf32 needs a CUDA device)")
        if not isinstance(self.compile, bool):
            raise _fail("compile", self.compile, "true or false")

    def beta(self, epoch: int) -> float:
        """KL warm-up weight β_t = min(1, epoch / warmup_epochs) for 1-based ``epoch``."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, epoch / self.warmup_epochs)


MODEL_FIELDS = frozenset(f.name for f in fields(ModelConfig))
TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))


@dataclass(frozen=True)
class TrialConfig:
    """One trial: a model and how to train it. Flat dicts of it carry every field once."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_flat(self) -> dict[str, Any]:
        return {**self.model.to_dict(), **self.train.to_dict()}

    @classmethod
    def from_flat(cls, data: dict[str, Any]) -> TrialConfig:
        unknown = sorted(set(data) - MODEL_FIELDS - TRAIN_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown trial field(s) {', '.join(unknown)}: expected some of "
                f"{', '.join(sorted(MODEL_FIELDS | TRAIN_FIELDS))}"
            )
        model = ModelConfig.from_dict({k: v for k, v in data.items() if k in MODEL_FIELDS})
        train = TrainConfig.from_dict({k: v for k, v in data.items() if k in TRAIN_FIELDS})
        return cls(model=model, train=train)
