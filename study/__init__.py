"""Study orchestration: the command line, study files, Ray Tune runs and Parquet results.

Packages, each with one job: `cli` (the ``gmmpvae`` command line), `spec` (the study file,
its validated spec, the checks before anything starts), `store` (the study folder on disk),
`recovery` (repairs after a crash), `tune` (the Ray Tune engine: the only package that
imports Ray, lazily, see its docstring). Modules: `run` (run and resume), `optuna_study` (the
study's Optuna study), `outcome`, `summary`, `provenance`, `errors`. docs/ARCHITECTURE.md has
the layout.
"""
