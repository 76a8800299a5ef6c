"""Turns every data source into a ``Dataset``: fixed, seeded, normalised splits.

Sources: scikit-learn's digits, Fashion-MNIST (TFDS-prepared or Debian's IDX
files), any prepared TFDS dataset, class-per-folder images, ``.npz`` files and
NumPy arrays in memory (`from_arrays`). Nothing is ever downloaded. This package imports nothing else from ``nas``.
"""

from nas.data.arrays import ArrayData, from_arrays
from nas.data.dataset import Dataset
from nas.data.errors import DatasetError, DatasetWarning
from nas.data.load import load_dataset

__all__ = ["ArrayData", "Dataset", "DatasetError", "DatasetWarning", "from_arrays", "load_dataset"]
