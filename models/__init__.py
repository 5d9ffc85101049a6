"""The PyTorch GMMpVAE: distributions, KL bounds, priors, networks, data, training, evaluation."""

__version__ = "0.1.0"
