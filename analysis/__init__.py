"""Polars analysis of study results: the paper's tables and figures, and the report."""
