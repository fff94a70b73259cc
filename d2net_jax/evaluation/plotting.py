"""One video's TCAM, attention, ground truth and detections on one time axis (the paper's Fig. 4).

`plot_video` draws, in seconds:
  * top panel, per snippet: T_c (solid) and, for D2-Net's localizer ('tcam'), the refined
    r_c = lambda' * T_c (dotted) of the chosen classes, and lambda' (black, dashed); for another
    localizer (e.g. SAL's 'oic') the method's 'tcam' and 'attention' arrays as they are;
  * bottom panel: one row per chosen class, the ground-truth instances as green bars in the upper
    half and the detections as blue bars in the lower half whose height is the score relative to
    the best detection drawn (as in Fig. 4).
Ground-truth classes and predicted-only ones (drawn for the model's scores or detections, with no
ground truth in the video) are told apart in the legend and the class rows. `window` draws a part
of a long video. The file format follows the extension of the path: .png, .pdf or .svg
(`check_output`, also called by `d2net-jax plot` before any work).

Matplotlib's Agg canvas is used directly (no pyplot, no global backend switch), so it runs
headless and in threads.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from d2net_jax import localize
from d2net_jax.utils import atomic_write


def _class_index(value: Any, class_names: Sequence[str], what: str) -> int:
  """A class given by name or index -> its index; ValueError for unknown ones."""
  if isinstance(value, (str, np.str_)):
    try:
      return list(class_names).index(str(value))
    except ValueError:
      raise ValueError(f'{what}: unknown class {str(value)!r}; classes: '
                       f'{list(class_names)}') from None
  if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(class_names):
    return int(value)
  raise ValueError(f'{what}: class {value!r} is neither a class name nor an index in '
                   f'[0, {len(class_names)})')


def _segments(rows: Iterable[Any], class_names: Sequence[str], what: str, with_score: bool):
  """Rows (class, start_s, end_s[, score]) -> list of (class_index, start, end, score)."""
  out = []
  for row in rows:
    row = tuple(row)
    if len(row) != (4 if with_score else 3):
      fields = '(class, start_s, end_s, score)' if with_score else '(class, start_s, end_s)'
      raise ValueError(f'{what}: expected {fields}, got {row!r}')
    start, end = float(row[1]), float(row[2])
    if not (np.isfinite(start) and np.isfinite(end)) or end < start:
      raise ValueError(f'{what}: bad segment [{start}, {end}]')
    score = float(row[3]) if with_score else 1.0
    out.append((_class_index(row[0], class_names, what), start, end, score))
  return out


FORMATS = ('png', 'pdf', 'svg')


def check_output(path: str | os.PathLike) -> str:
  """The format of an output path from its extension; ValueError for any other extension."""
  suffix = pathlib.Path(path).suffix.lower().lstrip('.')
  if suffix not in FORMATS:
    got = '.' + suffix if suffix else 'none'
    raise ValueError(f'{path}: the figure format follows the extension, one of '
                     f'{", ".join("." + f for f in FORMATS)} (got {got})')
  return suffix


def check_window(window: Sequence[float] | None, duration: float | None = None
                 ) -> tuple[float, float] | None:
  """(start_s, end_s) with 0 <= start < end (end may be inf: the end of the video), and start
  before `duration`; None stays None."""
  if window is None:
    return None
  start, end = (float(x) for x in window)
  if not (np.isfinite(start) and 0 <= start < end):
    raise ValueError(f'window: need 0 <= start < end seconds, got start={start:g}, end={end:g}')
  if duration is not None and start >= duration:
    raise ValueError(f'window: start={start:g} s is past the end of the video ({duration:g} s)')
  return start, end


def plot_video(path: str | os.PathLike, **kwargs) -> pathlib.Path:
  """Writes `figure(**kwargs)` to `path` (format from the extension: `check_output`) and returns
  the path; missing parent folders are created. Written whole or not at all: a failed write
  (read-only place, disk full) raises an OSError naming `path` (`atomic_write.write_failed`)."""
  fmt = check_output(path)
  fig = figure(**kwargs)
  path = pathlib.Path(path)
  tmp = atomic_write.temporary_path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, format=fmt, bbox_inches='tight')
    os.replace(tmp, path)
  except OSError as e:
    raise atomic_write.write_failed(path, e, 'figure') from e
  finally:
    atomic_write.remove(tmp)
  return path


def figure(*, tcam: np.ndarray, attention: np.ndarray, seconds_per_snippet: float,
           class_names: Sequence[str], classes: Sequence[str | int] | None = None,
           ground_truth: Iterable[Any] | None = None,
           detections: localize.Detections | Iterable[Any] | None = None,
           title: str | None = None, localize_config: Any = None, localizer: str = 'tcam',
           relevant_classes: Sequence[int] | None = None,
           window: Sequence[float] | None = None, dpi: int = 120) -> Figure:
  """The figure of one video (module docstring).

  Args:
    tcam: (s, C) class activations T.
    attention: (s,) bottom-up attention lambda'.
    seconds_per_snippet: snippet t covers [t, t + 1) * seconds_per_snippet.
    class_names: the C class names.
    classes: classes to draw (names or indices). Default: the classes of the ground truth and the
      detections, and the relevant classes: `relevant_classes` when given, else for the 'tcam'
      localizer those of Sec. 3.3 under `localize_config`.
    ground_truth: (class, start_s, end_s) rows.
    detections: a `localize.Detections` or (class, start_s, end_s, score) rows.
    title: figure title.
    localize_config: the run's `localize` section (needed by the 'tcam' localizer), for the refined
      sequence (its attention rescaling) and the default classes of the 'tcam' localizer.
    localizer: the method's localizer. Only 'tcam' (D2-Net) draws the refined sequence and
      derives classes from Sec. 3.3; any other draws `tcam` and `attention` as given.
    relevant_classes: class indices the localizer localized (e.g. `localize.oic` selection),
      drawn by default.
    window: (start_s, end_s): draw this part of the video only (default classes: those with
      ground truth or detections in it, and the relevant ones).
    dpi: resolution.
  """
  tcam = np.asarray(tcam, np.float64)
  attention = np.asarray(attention, np.float64)
  if tcam.ndim != 2 or tcam.shape[0] == 0:
    raise ValueError(f'tcam must be (s, C) with s > 0, got shape {tcam.shape}')
  if attention.shape != (tcam.shape[0],):
    raise ValueError(f'attention must be ({tcam.shape[0]},), got shape {attention.shape}')
  if len(class_names) != tcam.shape[1]:
    raise ValueError(f'{len(class_names)} class names for a tcam of {tcam.shape[1]} classes')
  if not seconds_per_snippet > 0:
    raise ValueError(f'seconds_per_snippet must be > 0, got {seconds_per_snippet}')
  window = check_window(window, tcam.shape[0] * float(seconds_per_snippet))

  if localize_config is None and localizer == 'tcam':
    raise ValueError("localizer 'tcam' needs localize_config (the run's config.localize)")
  d2net = localizer == 'tcam'
  refined = localize.refined_sequence(tcam, attention, localize_config) if d2net else None
  gt = _segments(ground_truth or (), class_names, 'ground_truth', with_score=False)
  if isinstance(detections, localize.Detections):
    detections = detections.to_list()
  det = _segments(detections or (), class_names, 'detections', with_score=True)
  gt_classes = {g[0] for g in gt}  # Of the whole video.
  if window is not None:  # Only what overlaps the window.
    gt = [g for g in gt if g[2] >= window[0] and g[1] <= window[1]]
    det = [d for d in det if d[2] >= window[0] and d[1] <= window[1]]

  if relevant_classes is not None:
    relevant = {_class_index(int(c), class_names, 'relevant_classes') for c in relevant_classes}
  elif d2net:
    scores = localize.video_class_scores(tcam, attention, localize_config)
    relevant = set(np.flatnonzero(localize.relevant_classes(scores, localize_config)).tolist())
  else:
    relevant = set()
  predicted = relevant | {d[0] for d in det}
  if classes is not None:
    drawn = [_class_index(c, class_names, 'classes') for c in classes]
    drawn = list(dict.fromkeys(drawn))
  else:
    drawn = sorted(predicted | {g[0] for g in gt})
  if not drawn:
    raise ValueError('no class to draw: pass `classes`')

  s = tcam.shape[0]
  sps = float(seconds_per_snippet)
  edges = np.arange(s + 1) * sps  # Snippet t is drawn flat over [t, t + 1) * sps.

  def steps(values):
    return edges, np.append(values, values[-1])

  x_range = (window[0], min(window[1], s * sps)) if window else (0.0, s * sps)
  shown = slice(int(x_range[0] // sps), max(int(np.ceil(x_range[1] / sps)), 1))  # Snippets drawn.

  def kind(c):  # How the legend and the class rows tell classes apart.
    return (' (ground truth)' if c in gt_classes else ' (predicted only)' if c in predicted
            else '')

  fig = Figure(figsize=(12, 3.2 + 0.45 * len(drawn)), dpi=dpi)
  FigureCanvasAgg(fig)
  grid = fig.add_gridspec(2, 1, height_ratios=[3, 0.6 + 0.45 * len(drawn)], hspace=0.08)
  top = fig.add_subplot(grid[0])
  bottom = fig.add_subplot(grid[1], sharex=top)
  colors = [f'C{i % 10}' for i in range(len(drawn))]

  for color, c in zip(colors, drawn):
    top.plot(*steps(tcam[:, c]), color=color, lw=1.2, drawstyle='steps-post',
             label=f"{'T' if d2net else 'tcam'}: {class_names[c]}{kind(c)}")
    if d2net:
      top.plot(*steps(refined[:, c]), color=color, lw=1.0, ls=':', drawstyle='steps-post',
               label=f"λ'·T: {class_names[c]}")
  top.plot(*steps(attention), color='black', lw=1.0, ls='--', drawstyle='steps-post',
           label="λ' (bottom-up attention)" if d2net else 'attention')
  top.set_ylabel('activation')
  top.set_ylim(0, max(1.05, float(np.max(attention[shown], initial=0)) * 1.05,
                      float(np.max(tcam[shown][:, drawn], initial=0)) * 1.05))
  top.legend(loc='upper left', bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
  top.grid(alpha=0.3)
  top.tick_params(labelbottom=False)

  row_of = {c: len(drawn) - 1 - i for i, c in enumerate(drawn)}  # First class on top.
  best = max([d[3] for d in det if d[0] in row_of] + [0.0])
  for c, start, end, _ in gt:
    if c in row_of:
      y = row_of[c]
      bottom.broken_barh([(start, end - start)], (y + 0.52, 0.4), color='tab:green', alpha=0.8)
  for c, start, end, score in det:
    if c in row_of:
      y = row_of[c]
      height = 0.45 * (max(score, 0.0) / best if best > 0 else 1.0)
      bottom.broken_barh([(start, end - start)], (y + 0.03, max(height, 0.02)),
                         color='tab:blue', alpha=0.55, edgecolor='navy', linewidth=0.4)
  bottom.set_ylim(0, len(drawn))
  bottom.set_yticks(np.arange(len(drawn)) + 0.5,
                    [class_names[c] + kind(c) for c in drawn[::-1]], fontsize=8)
  for y in range(1, len(drawn)):
    bottom.axhline(y, color='grey', lw=0.5)
  bottom.set_xlim(*x_range)
  bottom.set_xlabel('time (s)    [green: ground truth; blue: detections, height = score / best]')
  bottom.legend(handles=[Patch(color='tab:green', alpha=0.8, label='ground truth'),
                         Patch(color='tab:blue', alpha=0.55, label='detections')],
                loc='upper left', bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
  if title:
    top.set_title(title + (f' [{x_range[0]:g} s, {x_range[1]:g} s]' if window else ''))
  return fig
