"""The evaluator's result and its outputs: `EvaluationResult` (per-tIoU mAP, per-class AP, TP/FP
counts, the protocol and ground truth that scored it), the printed table and the metrics JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
  """mAP and the counts behind it.

  Attributes:
    tiou: (K,) thresholds.
    mAP: (K,) mean AP over the C scored classes, fractions in [0, 1].
    average_mAP: mean of `mAP` over all K thresholds.
    range_mAP: {'0.1:0.5': .., '0.3:0.7': .., '0.1:0.7': ..}, the THUMOS14 averages whose
      thresholds are all in `tiou`.
    class_names: (C,) scored classes.
    ap: (C, K) per-class AP.
    num_positives: (C,) GT instances per class.
    num_detections_per_class: (C,) scored detections per class.
    true_positives, false_positives: (C, K) counts.
    num_videos: scored GT videos; num_videos_with_instances: those with >= 1 instance.
    num_instances: GT instances scored.
    num_detections_input, num_detections: detections given / scored.
    num_ambiguous_removed: detections dropped for overlapping an ambiguous region.
    num_unknown_video_detections, num_unknown_videos: detections (videos) not in the scored GT.
    unknown_video_policy: what was done with them ('false_positive' or 'drop').
    num_ignored_detections: detections of declared classes without GT (not scored).
    classes_without_instances: those classes.
    subsets: scored subsets.
    protocol: one line saying how it was scored.
    protocol_name: 'activitynet' or 'd2net_official' (evaluation.protocol).
    ground_truth: which ground truth scored it (file or dataset, videos, instances).
    notes: warnings raised while scoring (shown in the table).
    unmatchable_instances: 'video class [start, end]' of the GT instances of zero length (e.g.
      starting after the video's end, clipped): kept as positives, as the reference scorer does,
      but no detection can ever match them.
  """
  tiou: np.ndarray
  mAP: np.ndarray
  average_mAP: float
  range_mAP: dict[str, float]
  class_names: tuple[str, ...]
  ap: np.ndarray
  num_positives: np.ndarray
  num_detections_per_class: np.ndarray
  true_positives: np.ndarray
  false_positives: np.ndarray
  num_videos: int
  num_videos_with_instances: int
  num_instances: int
  num_detections_input: int
  num_detections: int
  num_ambiguous_removed: int
  num_unknown_video_detections: int
  num_unknown_videos: int
  unknown_video_policy: str
  num_ignored_detections: int
  classes_without_instances: tuple[str, ...]
  subsets: tuple[str, ...]
  protocol: str
  protocol_name: str = 'activitynet'
  ground_truth: str = ''
  notes: tuple[str, ...] = ()
  unmatchable_instances: tuple[str, ...] = ()

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready: tiou, mAP, average_mAP, per_class_AP, protocol and the counts."""
    return {
        'tiou': [float(t) for t in self.tiou],
        'mAP': [float(m) for m in self.mAP],
        'average_mAP': float(self.average_mAP),
        'range_mAP': {k: float(v) for k, v in self.range_mAP.items()},
        'per_class_AP': {c: [float(a) for a in row] for c, row in zip(self.class_names, self.ap)},
        'true_positives': [int(x) for x in self.true_positives.sum(0)],
        'false_positives': [int(x) for x in self.false_positives.sum(0)],
        'per_class_true_positives': {c: [int(x) for x in row]
                                     for c, row in zip(self.class_names, self.true_positives)},
        'per_class_false_positives': {c: [int(x) for x in row]
                                      for c, row in zip(self.class_names, self.false_positives)},
        'per_class_num_instances': {c: int(x)
                                    for c, x in zip(self.class_names, self.num_positives)},
        'per_class_num_detections': {c: int(x) for c, x in zip(self.class_names,
                                                              self.num_detections_per_class)},
        'num_videos': self.num_videos,
        'num_videos_with_instances': self.num_videos_with_instances,
        'num_instances': self.num_instances,
        'num_detections_input': self.num_detections_input,
        'num_detections': self.num_detections,
        'num_ambiguous_removed': self.num_ambiguous_removed,
        'num_unknown_video_detections': self.num_unknown_video_detections,
        'num_unknown_videos': self.num_unknown_videos,
        'unknown_video_policy': self.unknown_video_policy,
        'num_ignored_detections': self.num_ignored_detections,
        'classes_without_instances': list(self.classes_without_instances),
        'subsets': list(self.subsets),
        'protocol': self.protocol,
        'protocol_name': self.protocol_name,
        'ground_truth': self.ground_truth,
        'notes': list(self.notes),
        'num_unmatchable_instances': len(self.unmatchable_instances),
        'unmatchable_instances': list(self.unmatchable_instances),
    }


# ----------------------------------------------------------------------------------------------
# Output.


def format_table(result: EvaluationResult, per_class: bool = True) -> str:
  """The mAP table (percent), the TP/FP counts per threshold and the per-class AP table."""
  r = result
  lines = [
      f'Detection mAP, subset {"+".join(r.subsets) or "-"}: {r.num_videos} videos '
      f'({r.num_videos_with_instances} with instances), {r.num_instances} instances, '
      f'{len(r.class_names)} classes; {r.num_detections} of {r.num_detections_input} '
      'detections scored.',
      f'Protocol: {r.protocol_name}: {r.protocol}',
      f'Ground truth: {r.ground_truth or "-"}',
  ]
  lines += [f'  WARNING: {note}' for note in r.notes]
  if r.num_ambiguous_removed:
    lines.append(f'  {r.num_ambiguous_removed} detections dropped for ambiguous regions.')
  if r.num_unknown_video_detections:
    fate = ('counted as false positives' if r.unknown_video_policy == 'false_positive'
            else 'dropped')
    lines.append(f'  WARNING: {r.num_unknown_video_detections} detections in '
                 f'{r.num_unknown_videos} videos not in the ground truth ({fate}).')
  if r.num_detections_input == 0:
    lines.append('  WARNING: no detections at all (empty detections): every AP is 0.')
  if r.unmatchable_instances:
    shown = '; '.join(r.unmatchable_instances[:5])
    extra = len(r.unmatchable_instances) - 5
    more = f' (+{extra} more)' if extra > 0 else ''
    lines.append(f'  WARNING: {len(r.unmatchable_instances)} of {r.num_instances} GT instances '
                 f'have zero length and can never be matched (kept as positives, as the reference '
                 f'scorer does): {shown}{more}.')
  if r.num_ignored_detections:
    lines.append(f'  WARNING: {r.num_ignored_detections} detections of classes without ground '
                 f'truth ({", ".join(r.classes_without_instances)}) not scored.')
  head = ''.join(f'{t:>8.2f}' for t in r.tiou)
  averages = {'avg': r.average_mAP, **r.range_mAP}
  avg_head = ''.join(f'{"avg " + k if k != "avg" else "avg":>13s}' for k in averages)
  lines += [
      '',
      f'{"tIoU":<10s}{head}{avg_head}',
      f'{"mAP (%)":<10s}' + ''.join(f'{100 * m:8.2f}' for m in r.mAP) +
      ''.join(f'{100 * v:13.2f}' for v in averages.values()),
      f'{"TP":<10s}' + ''.join(f'{int(x):8d}' for x in r.true_positives.sum(0)),
      f'{"FP":<10s}' + ''.join(f'{int(x):8d}' for x in r.false_positives.sum(0)),
  ]
  if per_class and r.class_names:
    width = max(12, max(len(c) for c in r.class_names) + 1)
    lines += ['', 'Per-class AP (%)',
              f'{"class":<{width}s}{"#GT":>6s}{"#det":>7s}{head}']
    for c, name in enumerate(r.class_names):
      lines.append(f'{name:<{width}s}{int(r.num_positives[c]):6d}'
                   f'{int(r.num_detections_per_class[c]):7d}' +
                   ''.join(f'{100 * a:8.2f}' for a in r.ap[c]))
  return '\n'.join(lines)


def save_metrics(path: str | os.PathLike, result: EvaluationResult) -> pathlib.Path:
  """Writes `result.to_dict()` as JSON."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result.to_dict(), f, indent=1)
  return path
