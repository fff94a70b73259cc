"""Localizers: per-snippet network outputs of one video -> scored detections in seconds. NumPy.

  common.py  shared pieces: `Detections`, runs above thresholds, interval NMS, range sums
  tcam.py    D2-Net's Sec. 3.3 localizer ('tcam'): refined TCAM, outer-inner contrast, hard NMS
  oic.py     SAL's localizer ('oic', BaS-Net lineage): x24 upsampling, OIC score, BaS-Net soft-NMS
  hamnet.py  CO2-Net's localizer ('hamnet'): OIC scores of attention runs, Gaussian soft-NMS

A method names its localizer (`Method.localizer`; a wrapper such as DFE takes its base's:
`methods.resolve_localizer(config)`); `localize_outputs` runs it. Each entry of
`LOCALIZERS` is fn(snippet, video, seconds_per_snippet, config) -> Detections, where `snippet`
holds one video's (s, ...) arrays, `video` its per-video arrays, and `config` is the whole config
(each localizer reads its own part of `config.localize`). The names of the modules are re-exported
here, so `from d2net_jax import localize; localize.localize_video(...)` works as before.
"""

from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

from d2net_jax.localize import common
from d2net_jax.localize import hamnet
from d2net_jax.localize import oic
from d2net_jax.localize import tcam
from d2net_jax.localize.common import (Detections, find_proposals, nms_keep, range_sums,  # noqa: F401
                                       topk_mean)
from d2net_jax.localize.tcam import (contrast_scores, localize_video, localize_videos,  # noqa: F401
                                     outer_width, proposal_thresholds, refined_sequence,
                                     relevant_classes, video_class_scores)

Localizer = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray], float, Any], Detections]


def _tcam_localizer(snippet, video, seconds_per_snippet, config) -> Detections:
  """Sec. 3.3 on snippet['tcam'] (s, C) and snippet['attention'] (s,), `config.localize`."""
  del video
  return tcam.localize_video(snippet['tcam'], snippet['attention'], seconds_per_snippet,
                             config.localize)


def _oic_localizer(snippet, video, seconds_per_snippet, config) -> Detections:
  """SAL's OIC localizer on snippet['cas'] (s, C), snippet['a_f'], snippet['a_r'] (s,) and
  video['sc'] (C,), `config.localize.oic`."""
  return oic.localize_video(snippet['cas'], snippet['a_f'], snippet['a_r'], video['sc'],
                            seconds_per_snippet, config.localize.oic)


def _hamnet_localizer(snippet, video, seconds_per_snippet, config) -> Detections:
  """CO2-Net's localizer on snippet['cas'] (s, C + 1) and snippet['attention'] (s,),
  `config.localize.hamnet`."""
  del video
  return hamnet.localize_video(snippet['cas'], snippet['attention'], seconds_per_snippet,
                               config.localize.hamnet)


LOCALIZERS: Dict[str, Localizer] = {'tcam': _tcam_localizer, 'oic': _oic_localizer,
                                    'hamnet': _hamnet_localizer}


def relevant_classes_of(name: str, snippet, video, config) -> Optional[np.ndarray]:
  """(R,) int classes localizer `name` localizes in this video, for plots; None for 'tcam'
  (`plotting.plot_video` applies Sec. 3.3 itself) and localizers without such a rule."""
  if name == 'oic':
    return oic.video_classes(snippet['cas'], snippet['a_f'], snippet['a_r'], video['sc'],
                             config.localize.oic)
  if name == 'hamnet':
    return hamnet.video_classes(snippet['cas'], snippet['attention'], config.localize.hamnet)
  return None


def check_config(name: str, config) -> None:
  """ValueError (one line, naming the field) for `config.localize` settings localizer `name`
  cannot run with; called before training so a bad field fails before the first evaluation."""
  get(name)
  if name == 'oic':
    oic.check_config(config.localize.oic)
  elif name == 'hamnet':
    hamnet.check_config(config.localize.hamnet)
  elif name == 'tcam':
    tcam._check_config(config.localize)  # pylint: disable=protected-access


def get(name: str) -> Localizer:
  try:
    return LOCALIZERS[name]
  except KeyError:
    raise ValueError(f'no localizer {name!r}; known: {", ".join(LOCALIZERS)}') from None


def localize_outputs(name: str, snippet, video, seconds_per_snippet: float, config) -> Detections:
  """Detections of one video by localizer `name`."""
  return get(name)(snippet, video, seconds_per_snippet, config)
