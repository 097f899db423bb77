"""Resuming an Optuna search: the trials a study in a SQLite file still needs.

hydra-optuna-sweeper loads an existing study (``load_if_exists``) but then runs ``n_trials``
more, however many it already has. ``${optuna_trials_left:DB,STUDY,TOTAL}`` in a search
preset makes ``n_trials`` what is missing to reach ``TOTAL`` finished trials, so running the
same command on the same sweep folder after an interruption finishes the search.
"""

from __future__ import annotations

import logging
from pathlib import Path

from denoise.runtime.errors import SettingError, user_errors

log = logging.getLogger(__name__)


def finished_trials(database: Path, study_name: str) -> int:
    """Trials of ``study_name`` in the SQLite ``database`` that completed (0 without one)."""
    if not database.is_file():
        return 0
    import optuna  # optional: the [scale] extra

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{database}"
    if study_name not in {study.study_name for study in optuna.get_all_study_summaries(storage)}:
        return 0
    study = optuna.load_study(study_name=study_name, storage=storage)
    return sum(trial.state == optuna.trial.TrialState.COMPLETE for trial in study.trials)


def trials_left(database: str, study_name: str, total: object) -> int:
    """``total`` less the finished trials of the study: what a resumed search still runs.
    Hydra resolves this before any job, outside the commands' own error handling, so a bad
    ``search.trials`` is made one line here."""
    with user_errors():
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise SettingError(f"search.trials={total}: must be a whole number of at least 1")
        done = finished_trials(Path(str(database)), str(study_name))
    if done:
        log.info("Study %s in %s has %d finished trials of %d", study_name, database, done, total)
    return max(0, total - done)
