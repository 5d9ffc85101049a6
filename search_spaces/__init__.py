"""Optuna search spaces and the paper's grids, registered by name."""
