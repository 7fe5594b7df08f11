"""Lightning's logging, made fit for resumable runs and a quiet console.

Lightning's CSVLogger deletes ``metrics.csv`` when its folder is not empty, which would erase
the history of the epochs before a ``--resume``; here the file is appended to instead.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, metrics_file: str = ExperimentWriter.NAME_METRICS_FILE):
        self.NAME_METRICS_FILE = metrics_file  # read by the base class's __init__
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = sorted(header)  # new keys extend the existing header


class ResumableCSVLogger(CSVLogger):
    """``metrics_file``: the CSV's name in the log folder (the GAN keeps ``losses.csv``)."""

    def __init__(self, *args, metrics_file: str = ExperimentWriter.NAME_METRICS_FILE, **kwargs):
        super().__init__(*args, **kwargs)
        self.metrics_file = metrics_file

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self.metrics_file)
        return self._experiment


def quiet_lightning() -> None:
    """Keep Lightning's advertising tips and third-party deprecation chatter out of the log."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
