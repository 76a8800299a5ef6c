"""`Recorder`: what nas-search and nas-train use to append their experiments to the LDE, never failing them.

A trial's result is in its run's own store whatever happens here, so an LDE
that cannot be written (a path that is a directory, a full disk, a file of
another program, a lock held past the busy timeout) must not stop a search:
the recorder logs a warning naming the LDE path and what to do
(`nas-lde import RUN_DIR` adds the run later) and the run goes on.

Cheap per trial: the dataset is fingerprinted once per process
(`dataset_record` caches per Dataset object), the LDE is opened once, at the
first append, and each trial is one small transaction.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

from nas.lde.database import LDE, DatasetRecord, ExperimentRecord, LDEError
from nas.lde.fingerprint import dataset_record
from nas.lde.ingest import search_trial_experiment, train_run_experiment

log = logging.getLogger("nas.lde")


class Recorder:
    """Appends one process's experiments on one dataset to the LDE at `path` (nothing when not `enabled`).

    Args:
      path: the LDE file (``lde.path``; ``~`` is expanded).
      enabled: ``lde.enabled``.
      dataset: the `nas.data.Dataset` the experiments train on.
    """

    def __init__(self, path: str, enabled: bool, dataset: Any):
        self.path = os.path.abspath(os.path.expanduser(str(path)))
        self.enabled = bool(enabled)
        self._data = dataset
        self._record: DatasetRecord | None = None
        self._lde: LDE | None = None
        self._broken = False  # the LDE could not be opened: warned once, not retried every trial
        self.added = 0

    def _open(self) -> LDE | None:
        if self._lde is None and not self._broken:
            self._record = self._record or dataset_record(self._data)
            lde = None
            try:
                lde = LDE(self.path)
                lde.add_dataset(self._record)
            except (LDEError, OSError) as exc:
                if lde is not None:
                    lde.close()
                self._broken = True
                log.warning("LDE %s cannot be written, so this run's experiments are not recorded there (the run "
                            "goes on; `nas-lde import RUN_DIR` adds them later): %s", self.path, exc)
                return None
            self._lde = lde
        return self._lde

    def dataset(self) -> DatasetRecord:
        self._record = self._record or dataset_record(self._data)
        return self._record

    def append(self, experiments: Sequence[ExperimentRecord]) -> int:
        """Appends; returns rows added (0 when disabled or the LDE failed, with a warning)."""
        if not self.enabled:
            return 0
        lde = self._open()
        if lde is None:
            return 0
        try:
            added = lde.append(experiments)
        except (LDEError, OSError) as exc:
            log.warning("LDE %s: could not append %d experiment(s) (the run goes on; `nas-lde import RUN_DIR` "
                        "adds them later): %s", self.path, len(experiments), exc)
            return 0
        self.added += added
        return added

    def search_trial(self, *, run_dir: str, run_id: int, trial: int, arch: Any, base: Mapping[str, Any],
                     hyperparameters: Mapping[str, Any], history: Sequence[Mapping[str, Any]], status: str,
                     epochs: int | None, t_tr: float | None, num_params: int | None) -> int:
        """Records one trial nas-search has just trained (keyed as `nas-lde import` keys it)."""
        if not self.enabled or self._broken:
            return 0
        try:
            record = search_trial_experiment(
                run_dir=run_dir, run_id=run_id, trial=trial, dataset=self.dataset(), arch=arch, base=base,
                hyperparameters=hyperparameters, history=history, status=status, epochs=epochs, t_tr=t_tr,
                num_params=num_params)
        except Exception as exc:  # a record that cannot be built must not stop the search either
            log.warning("LDE %s: trial %d of %s not recorded: %s", self.path, trial, run_dir, exc)
            return 0
        return self.append([record])

    def train_run(self, *, run_dir: str, arch: Any, train_config: Mapping[str, Any],
                  history: Sequence[Mapping[str, Any]], status: str, epochs: int | None, t_tr: float | None,
                  num_params: int | None) -> int:
        """Records a nas-train run."""
        if not self.enabled or self._broken:
            return 0
        try:
            record = train_run_experiment(run_dir=run_dir, dataset=self.dataset(), arch=arch,
                                          train_config=train_config, history=history, status=status,
                                          epochs=epochs, t_tr=t_tr, num_params=num_params)
        except Exception as exc:
            log.warning("LDE %s: the run %s not recorded: %s", self.path, run_dir, exc)
            return 0
        return self.append([record])

    def close(self) -> None:
        if self._lde is not None:
            self._lde.close()
            self._lde = None


def recorder(cfg: Any, dataset: Any) -> Recorder:
    """The `Recorder` of a composed nas-search / nas-train config (its ``lde`` group; absent: disabled)."""
    node = cfg.get("lde") if hasattr(cfg, "get") else None
    if node is None:
        return Recorder(os.devnull, False, dataset)
    return Recorder(str(node.path), bool(node.enabled), dataset)


__all__ = ["Recorder", "recorder"]
