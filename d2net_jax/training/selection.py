"""Which state a run's test evaluates, and how its record says so (best/selection.json,
results.json 'selected_checkpoint' and 'selection_protocol', the line above the test table).

'validation' / 'test': the best checkpoint by mAP on a validation split of the training subset /
on the test set. 'final': no selection, the final state, when the videos that would select have
no ground-truth segment (weak labels only). A best checkpoint that is missing or unreadable at
the end is replaced by the final state, and the record says so ('fallback').
"""

from d2net_jax.training import checkpointing


def no_selection(step: int, pool: str) -> dict:
  """The selection record of a run without ground truth to select on."""
  return {'step': step, 'metric': 'none', 'value': None, 'protocol': 'final',
          'rule': f'the final state: no ground-truth segment in the {pool} videos to select a '
                  'checkpoint on'}


PROTOCOLS = {
    'validation': 'best checkpoint selected on a validation split held out from the training '
                  'subset',
    'test': 'best checkpoint selected on the TEST set (published protocol; optimistic)',
    'final': 'no selection: the final state (no ground-truth segment to select on)',
}


def selected_words(selection: dict, protocol: str) -> str:
  """How the tested state was chosen, for the line above the test table."""
  step = selection['step']
  if protocol == 'final':
    return f'final state (step {step}; no ground truth to select a checkpoint on)'
  if 'fallback' in selection:
    return f'final state (step {step}; the selected checkpoint is unusable, see the warning above)'
  return (f'checkpoint of step {step} (selected by {protocol} {selection["metric"]} = '
          f'{100 * selection["value"]:.2f})')


def best_or_final(checkpointer, final_state, selection, log):
  """(state, selection) to test: the best checkpoint, or, when it is missing or unreadable, the
  final state (one line says so; `selection` then records the fallback)."""
  try:
    best_state = checkpointer.restore_best(final_state)
    problem = None if best_state is not None else 'missing'
  except Exception as e:  # pylint: disable=broad-except
    best_state, problem = None, f'unreadable ({checkpointing.read_problem(e)})'
  if best_state is not None:
    return best_state, selection
  step = int(final_state.step)
  log(f'WARNING: the best checkpoint in {checkpointer.workdir / "best"} is {problem}; testing '
      f'the final state (step {step}) instead')
  return final_state, {'step': step, 'fallback': f'best checkpoint {problem}; final state tested',
                       'metric': (selection or {}).get('metric', 'none'),
                       'value': (selection or {}).get('value', float('nan'))}
