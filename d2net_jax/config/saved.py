"""A run's saved config (its config.json) read on the current schema: fields removed since are
dropped, fields whose default changed since keep the value they meant when written.
"""

import json

# Fields taken out of the schema that never changed what a run computed. A run's config.json
# written before still loads and resumes (`without_removed_fields` drops them).
REMOVED_FIELDS = (
    'dfe.loss.w_mem',  # Only for dfe.gmm.update='learned', which was never implemented.
    'dfe.loss.mem_temperature',  # Likewise.
)


def without_removed_fields(saved: dict) -> dict:
  """A copy of a saved config (config.json's nested dict) without the REMOVED_FIELDS."""
  saved = json.loads(json.dumps(saved))
  for dotted in REMOVED_FIELDS:
    *path, field = dotted.split('.')
    node = saved
    for part in path:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.pop(field, None)
  return saved


# Fields whose schema default changed: {'section.field': the default before}. A config.json holds
# every field of its day's schema, so only a trimmed or hand-written one lacks such a field; it
# keeps its old meaning when config.method is the section's method (`saved_config`).
CHANGED_DEFAULTS = {
    'dfe.base': 'd2net',  # 'co2net' (the spec's default) since co2net declared its feature split.
}


def saved_config(saved: dict) -> dict:
  """A saved config (config.json's nested dict) as the current schema reads it: a copy without
  the REMOVED_FIELDS, with the old default of each CHANGED_DEFAULTS field its method's section
  lacks (a DFE run without dfe.base was DFE over D2-Net)."""
  saved = without_removed_fields(saved)
  for dotted, old in CHANGED_DEFAULTS.items():
    *path, field = dotted.split('.')
    if saved.get('method', 'd2net') != path[0]:
      continue
    node = saved
    for part in path:
      node = node.setdefault(part, {})
    node.setdefault(field, old)
  return saved
