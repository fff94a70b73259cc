"""Training any registered method (the layer under `commands/`).

  train.py          `train_step` and `train_and_evaluate`: banner sections step, input, state,
                    checkpoints, evaluation, loop; method-agnostic
  train_state.py    `TrainState` (params, optimiser state, `method_state`, key, step), optimiser
  parallel.py       the step under `jax.pmap` or `jax.jit` over a device mesh, many hosts
  checkpointing.py  orbax checkpoints: latest few, the selected best, exact resume
  setup.py          a run's model, state, validation split and batcher; a trained run restored
  run_data.py       a run's dataset, or new videos in the trained model's class order
"""
