"""The study folder on disk: its layout, the Parquet schemas, the trial records, the
consolidated dataset, damage detection and the one-driver lock. Nothing here imports Ray or
torch.

- `layout`: file and folder names, local paths and URIs, atomic writes, and `StudyFolder`: a
  study folder resolved once (one filesystem resolution) and passed down;
- `schemas`: the Parquet schemas (version 3), record file names, trial states;
- `records`: a trial's ``trial.json`` (and a carried one's, `carried_record`), its
  ``epochs.parquet``, the plan;
- `running`: a running attempt's marker (``running.json``), read by ``status`` instead of
  Ray Tune's state;
- `damage`: torn trial files, detected and named;
- `consolidate`: ``results/{trials,epochs,test_ll}.parquet`` rebuilt from the trial folders;
- `lock`: one live driver per study (flock, or a lease on object stores).
"""

from models.records import EPOCH_COLUMNS, METRICS_FILE  # a trial folder's, defined there
from study.store import running
from study.store.consolidate import Consolidated, consolidate, records_table
from study.store.damage import damage_line, trial_damage
from study.store.layout import (
    OPTUNA_JOURNAL,
    PLAN_FILE,
    RESULTS_DIR,
    STUDY_FILE,
    TRIALS_DIR,
    TUNE_DIR,
    StudyFolder,
    check_writable,
    copy_folder,
    exists,
    filesystem,
    is_uri,
    join,
    local_path,
    log_folder,
    move_folder,
    normalise,
    one_line,
    read_bytes,
    read_json,
    scratch,
    utc_stamp,
    write_bytes,
    write_json,
    write_table,
)
from study.store.records import (
    carried_record,
    errored_to_rerun,
    make_record,
    now_utc,
    read_markers,
    read_plan,
    read_record,
    read_records,
    record_config,
    trial_folders,
    write_epochs,
    write_plan,
    write_record,
)
from study.store.schemas import (
    BUDGET_SOURCES,
    COMPLETED,
    DIAGNOSTIC_METRICS,
    EPOCHS_FILE,
    EPOCHS_SCHEMA,
    ERROR,
    MODEL_COLUMNS,
    PLAN_SCHEMA,
    PRUNED,
    RECORD_FILE,
    RUNNING_FILE,
    SCHEMA_VERSION,
    STATES,
    TEST_LL_FILE,
    TEST_LL_SCHEMA,
    TEST_METRICS,
    TRAIN_COLUMNS,
    TRIALS_FILE,
    TRIALS_SCHEMA,
)

__all__ = [
    "BUDGET_SOURCES", "COMPLETED", "DIAGNOSTIC_METRICS", "EPOCH_COLUMNS", "EPOCHS_FILE",
    "EPOCHS_SCHEMA", "ERROR", "METRICS_FILE", "MODEL_COLUMNS", "OPTUNA_JOURNAL", "PLAN_FILE",
    "PLAN_SCHEMA", "PRUNED", "RECORD_FILE", "RESULTS_DIR", "RUNNING_FILE", "SCHEMA_VERSION",
    "STATES", "STUDY_FILE", "TEST_LL_FILE", "TEST_LL_SCHEMA", "TEST_METRICS", "TRAIN_COLUMNS",
    "TRIALS_DIR", "TRIALS_FILE", "TRIALS_SCHEMA", "TUNE_DIR", "Consolidated", "StudyFolder",
    "carried_record", "check_writable", "consolidate", "copy_folder", "damage_line",
    "errored_to_rerun", "exists", "filesystem", "is_uri", "join", "local_path", "log_folder",
    "make_record", "move_folder", "normalise", "now_utc", "one_line", "read_bytes", "read_json",
    "read_markers", "read_plan", "read_record", "read_records", "record_config", "records_table",
    "scratch", "trial_damage", "trial_folders", "utc_stamp", "write_bytes", "write_epochs",
    "write_json", "write_plan", "write_record", "write_table", "running",
]
