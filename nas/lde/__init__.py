"""The lifelong database of experiments (LDE, NeuNetS's TAPAS): every trained network of every run.

`LDE` is the SQLite file; `dataset_record` fingerprints a dataset by content;
`nas.lde.ingest` turns a run store's trials (or a live trial) into
`ExperimentRecord`s. A store-level package: it imports `nas.ir`, `nas.data`
and `nas.store`, never the search, and no JAX at import.
"""

from nas.lde.database import (
    APPLICATION_ID,
    FORMAT_NAME,
    LDE,
    SCHEMA_VERSION,
    DatasetRecord,
    ExperimentRecord,
    LDEError,
)
from nas.lde.fingerprint import content_fingerprint, dataset_record

__all__ = ["APPLICATION_ID", "FORMAT_NAME", "LDE", "SCHEMA_VERSION", "DatasetRecord", "ExperimentRecord",
           "LDEError", "content_fingerprint", "dataset_record"]
