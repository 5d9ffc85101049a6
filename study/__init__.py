"""Study orchestration: the command line, study files, Ray Tune runs and Parquet results.

This is the only package that imports Ray, and it does so lazily inside functions.
"""
