"""The config schema (`schema.py`) and the checks every config passes before work (`checks.py`).

`from d2net_jax import config as config_lib; config_lib.base_config()` is the schema: its names
are re-exported here, with those of `saved.py` (a run's config.json on the current schema).
Presets in `configs/` build on it.
"""

from d2net_jax.config.saved import (  # noqa: F401
    CHANGED_DEFAULTS, REMOVED_FIELDS, saved_config, without_removed_fields)
from d2net_jax.config.schema import (  # noqa: F401
    PRESET_KEYS, apply_method_preset, apply_overrides, apply_preset_values, base_config,
    data_config, evaluation_config, format_preset_arg, localize_config, loss_config,
    model_config, oic_config, parse_preset_arg, train_config)
