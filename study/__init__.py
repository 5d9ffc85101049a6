"""Study orchestration: the command line, study files, Ray Tune runs and Parquet results.

Packages, each with one job: `cli` (the ``gmmpvae`` command line), `store` (the study folder
on disk), `recovery` (repairs after a crash), `tune` (the Ray Tune engine: the only package
that imports Ray, lazily, see its docstring). Modules: `spec` and `study_file` (the study
file and its validated spec), `checks` (validation before anything starts), `run` (run and
resume), `optuna_study` (the study's Optuna study), `outcome`, `summary`, `provenance`,
`errors`. docs/ARCHITECTURE.md has the layout.
"""
