"""Study orchestration: the command line, study files, Ray Tune runs and Parquet results.

This is the only package that imports Ray, and it does so lazily (no Ray import at module level
outside the modules that run inside Ray: trainable, optuna_search, progress). Where each piece
lives: docs/ARCHITECTURE.md, "Where does X live".
"""
