"""What a crash can tear, repaired before a driver goes on and named by the readers: the
Optuna journal's torn last line (`journal`), torn trial files and Optuna reconciled with the
trial records (`repair`). Nothing here imports Ray.
"""

from study.recovery.journal import JournalDamagedError, journal_problem, repair_journal
from study.recovery.repair import Repairs, problems, reconcile_optuna, repair_study

__all__ = ["JournalDamagedError", "Repairs", "journal_problem", "problems", "reconcile_optuna",
           "repair_journal", "repair_study"]
