"""d2net_jax: weakly-supervised temporal action localization (D2-Net, SAL, DFE, a MIL baseline)
in JAX/Flax.

The subpackages follow the flow features -> method -> step -> inference -> localizer -> evaluator,
and their imports point one way (top to bottom; the import-linter contract in setup.cfg, run by
tests/test_import_contract.py):

  commands/    `d2net-jax COMMAND`: one module per command (the only place that parses argv)
  training/    the update step, `TrainState`, pmap / mesh parallelism, checkpoints, the loop
  inference    a trained model over videos -> per-snippet outputs -> the method's localizer
  runs/        the workdir as a record: config and history, lock, metrics log
  config/      the config schema (shared sections + every method's) and its checks
  methods/     one folder per method behind one interface, and the layers they share
  evaluation/  detection mAP, the official D2-Net scorer, ground truth, results files, plots
  localize/    NumPy localizers: per-snippet outputs -> scored detections in seconds
  data/        records, readers, the HDF5 store, batching, the synthetic benchmark
  utils/       atomic writes, Ctrl-C handling, progress bars, config errors

`d2net_jax.model`, `d2net_jax.losses` and `d2net_jax.dmi` are documented re-exports of D2-Net's
modules (`methods/d2net/`), kept for code written before methods were plug-ins.
"""

__version__ = '0.1.0'
