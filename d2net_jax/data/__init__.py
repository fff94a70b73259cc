"""Feature data: readers, the HDF5 store, batching and the synthetic benchmark."""

from d2net_jax.data.records import DataError, Dataset, VideoRecord

__all__ = ['DataError', 'Dataset', 'VideoRecord']
