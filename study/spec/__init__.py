"""The study file and its validated spec: the sections and their checks (`sections`),
`StudySpec` and `from_raw` (`study_spec`), reading files, presets and command-line overrides
(`study_file`), and the checks before anything starts (`checks`). Every field of a study file
is documented in docs/STUDY_FILE.md.
"""

from study.spec.checks import Validated, validate
from study.spec.sections import KEYS, METRICS, SAMPLERS, SCHEDULERS
from study.spec.study_file import (
    FIELD_HELP,
    OVERRIDE_FLAGS,
    list_presets,
    load_spec,
    load_study,
)
from study.spec.study_spec import StudySpec, from_raw

__all__ = ["FIELD_HELP", "KEYS", "METRICS", "OVERRIDE_FLAGS", "SAMPLERS", "SCHEDULERS",
           "StudySpec", "Validated", "from_raw", "list_presets", "load_spec", "load_study",
           "validate"]
