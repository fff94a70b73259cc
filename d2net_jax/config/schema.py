"""The one config schema every preset in `configs/` starts from.

`base_config()` returns the official D2-Net code's THUMOS14 settings. Where the paper and the
official code disagree, the field defaults to the official code's value (it produced the published
numbers) and its comment says `paper:` with the paper's value; docs/d2net.md lists each difference.
Exceptions, where the official code is a defect or a non-standard protocol: `loss.pairing`,
`loss.snippet_pdmi`, `train.selection`, `evaluation.protocol` and `data.drop_short_videos`
default to d2net_jax's choice; `configs/<dataset>.py:official_protocol` sets the official ones.

`config.method` picks the method (`d2net_jax.methods`, default 'd2net'). Shared sections: `data`,
`train`, `localize`, `evaluation`; every registered method adds its own (D2-Net: `model` and
`loss`; the MIL baseline: `mil`; ...), so each method's fields exist whichever method runs and a
misspelt field fails. Presets import this module, call `base_config()` and override a few fields;
every field can be overridden on the command line (`--config.train.batch_size=4`).
"""

import ml_collections

from d2net_jax import methods
from d2net_jax.methods.d2net.config import loss_config, model_config  # noqa: F401  (D2-Net's sections)


def data_config() -> ml_collections.ConfigDict:
  """Where the features come from and how they are batched."""
  c = ml_collections.ConfigDict()
  # One of: 'synthetic' (generated on first use into `path`), 'hdf5' (our store), 'wtalc'
  # (W-TALC / D2-Net .npy layout), 'stpn' (STPN / BaS-Net per-video .npy layout).
  c.kind = 'hdf5'
  c.path = ''  # File or folder of the dataset; for 'synthetic' the cache folder ('' = workdir).
  c.name = 'Thumos14reduced'  # W-TALC file prefix: <name>-I3D-JOINTFeatures.npy, <name>-Annotations/.
  # D: RGB in the first D/2 channels, optical flow in the second. Checked against the data.
  # With one stream (`streams`), the width of that stream alone (I3D: 1024).
  c.feature_dim = 2048
  # What the features hold: 'rgb+flow' (two streams), or one stream, 'rgb' (an RGB-only store,
  # e.g. `d2net-jax extract`) or 'flow'. One stream of a two-stream store selects its half; a
  # one-stream store cannot give 'rgb+flow' (docs/data.md, "One-stream (RGB-only) stores").
  c.streams = 'rgb+flow'
  c.num_classes = 20  # Checked against the data's class list.
  c.train_subset = 'validation'  # THUMOS14 trains on `validation`; ActivityNet1.2 on `training`.
  c.test_subset = 'test'  # THUMOS14 tests on `test`; ActivityNet1.2 on `validation`.
  c.seconds_per_snippet = 0.64  # I3D: 16 frames at 25 fps.
  # W-TALC .npy files are pickled object arrays; unpickling runs code from the file. Only set this
  # for files you trust, and convert them once to the HDF5 store (`d2net-jax convert`).
  c.trust_pickle = False
  c.ambiguous_file = ''  # THUMOS14 Ambiguous_test.txt for the evaluation protocol ('' = none).
  # Segments reaching outside [0, duration]: 'clip' them with a warning (the real THUMOS14 and
  # ActivityNet1.2 files have some) or 'refuse' (error). end < start is always an error.
  c.segment_policy = 'clip'
  # Features whose length T * seconds_per_snippet differs from the annotated duration by more than
  # max(tolerance_snippets * seconds_per_snippet, tolerance_fraction * duration): 'warn' or 'error'.
  c.timing_check = 'warn'
  c.timing_tolerance_snippets = 2.0
  c.timing_tolerance_fraction = 0.02
  # W-TALC weak label: 'labels_all' (labels_all.npy; official code), 'instances' (classes of the
  # annotated instances) or 'union'. They differ for 28 of the 412 THUMOS14 videos.
  c.video_labels = 'labels_all'
  c.class_list = ''  # STPN layout: class names file, one per line ('' = sorted gt.json labels).
  # How training videos become fixed-length rows: 'crop' (a random contiguous crop of at most
  # max_seqlen snippets, zero-padded: D2-Net), 'resample' (every video resampled to num_segments
  # snippets, a random snippet per bin in training and uniform at test: SAL, CO2-Net), or 'auto'
  # (the method's own choice).
  c.sampling = 'auto'
  c.max_seqlen = 750  # 'crop': training crop length (snippets); batches are padded to this.
  c.num_segments = 0  # 'resample': snippets per video (0: max_seqlen).
  # 'resample' at test, for a video with at most num_segments snippets: 'repeat' (resampled up to
  # num_segments by repeating snippets, SAL THUMOS14) or 'keep' (all its snippets, padded and
  # masked, SAL ActivityNet).
  c.resample_short = 'repeat'
  # 'resample' in training: 'perturb' (a random snippet per bin, SAL THUMOS14 `random_perturb`) or
  # 'sorted_random' (SAL ActivityNet1.3 `random_sample`: a shorter video's snippets drawn with
  # replacement and sorted; the last bin starts at the index drawn for the one before it).
  c.resample_train = 'perturb'
  # Which videos a training batch holds: 'replacement' (each row drawn uniformly, official D2-Net)
  # or 'epoch' (a fresh permutation of the videos every epoch, no repeats within one).
  c.shuffle = 'replacement'
  # Which videos a training batch holds: 'uniform' (each row drawn as `shuffle` says),
  # 'similar_pairs' (CO2-Net: first `num_similar` groups of `similar_size` videos that share a
  # class, drawn among the classes with that many videos, then uniform rows with replacement;
  # data/similar_pairs.py) or 'auto' (the method's own choice).
  c.sampler = 'auto'
  c.num_similar = 3
  c.similar_size = 2  # CO2-Net's loader: 2 (its --similar-size flag never reaches the loader).
  # What the network sees at test: 'whole' (every snippet of a video, padded to a length bucket),
  # 'resample' (num_segments snippets by uniform_sampling, see resample_short) or 'auto' (the
  # method's choice: CO2-Net 'whole'; otherwise 'resample' when training resamples).
  c.test_sampling = 'auto'
  # Official ActivityNet1.2 loader: videos with at most `short_video_snippets` feature rows are
  # dropped from every subset (training and test). False (default): all videos are kept. True:
  # dropped, and their number and names are printed.
  c.drop_short_videos = False  # ActivityNet1.2 official: True.
  c.short_video_snippets = 5
  # Evaluation pads whole videos to a few lengths (one compiled program each), multiples of
  # eval_bucket: 'fitted' (at most eval_max_programs lengths chosen to pad the evaluated videos
  # least), 'multiple' (the next multiple of eval_bucket) or 'pow2' (eval_bucket * 2^k).
  # Measured on the real annotations (experiments/bench_eval_programs.py --bucket 16): THUMOS14
  # test 8 programs at 21% padding (26 at 9% with 'multiple' of 64), ActivityNet1.2 validation
  # 8 at 13%.
  c.eval_bucket = 16
  c.eval_bucket_mode = 'fitted'
  c.eval_max_programs = 8
  c.eval_batch_size = 1
  c.prefetch = 2  # Training batches prepared ahead in a background thread.
  # Checkpoint selection: a seeded fraction of the training subset is held out for validation.
  c.val_fraction = 0.1
  c.val_seed = 0
  # Synthetic benchmark (kind == 'synthetic').
  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.preset = 'thumos14_like'
  c.synthetic.seed = 0
  c.synthetic.num_train = -1  # -1: the preset's count.
  c.synthetic.num_test = -1
  c.synthetic.annotations = ''  # Lay synthetic features over a real annotation folder.
  c.synthetic.noise_scale = 1.0  # Multiplies the feature noise: > 1 harder, < 1 easier.
  # Feature model: 'i3d_like' (non-negative, I3D-like statistics: d2net_jax/data/synthetic.py) or
  # 'gaussian' (zero-mean, nearly orthogonal snippets: the benchmark before 'i3d_like').
  c.synthetic.features = 'i3d_like'
  return c


def train_config() -> ml_collections.ConfigDict:
  """Optimiser, schedule, parallelism, checkpoints and logging (d2net_jax/training/train.py)."""
  c = ml_collections.ConfigDict()
  c.seed = 1  # Parameters, dropout, Eq. 3 pairing and the data order all derive from it.
  # Global batch (videos), split over devices. Official options.py default: 20 (its help text
  # says 10; the README's command keeps the default). paper: 10.
  c.batch_size = 20
  c.num_steps = 20000
  c.learning_rate = 1e-4
  c.lr_schedule = 'constant'  # Official code and paper. 'cosine': decays to 0 at num_steps.
  c.weight_decay = 5e-4  # paper: 0.005.
  # 'coupled': wd * param added to the gradient before Adam (torch.optim.Adam, official code);
  # 'decoupled': AdamW.
  c.weight_decay_mode = 'coupled'
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  # Official code: no update when the loss is <= 0 (every video of the batch skipped). Non-finite
  # losses or gradients always skip the update.
  c.skip_nonpositive_loss = True
  # 'bfloat16': the model's convolutions and matmuls in bfloat16 (parameters, optimiser state and
  # every loss reduction, SVD and determinant stay float32); 'float32' everywhere otherwise.
  c.compute_dtype = 'float32'
  c.parallelism = 'pmap'  # 'pmap' (jax.pmap over local devices) or 'jit' (jax.jit over a device mesh).
  c.log_every = 10  # Metrics fetched from the device, written to metrics.jsonl, every this many steps.
  c.eval_every = 500  # Official code: evaluates every 500 steps (--test-iter).
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  # Best-checkpoint selection: 'validation' (held-out part of the training subset, see
  # data.val_fraction) or 'test' (the field's published protocol; inflates results).
  c.selection = 'validation'
  # Selection metric: mAP at this tIoU; -1 = mean over evaluation.tiou_thresholds. Official code:
  # mAP@0.5 for THUMOS14, the mean for ActivityNet1.2.
  c.selection_iou = 0.5
  c.final_test = True  # Evaluate the selected checkpoint on the test subset at the end.
  c.tensorboard = True  # TensorBoard event files too, when tensorboardX is installed.
  # Keep the training videos' features in memory after the first read (THUMOS14 at D=2048:
  # ~0.5 GB; ActivityNet1.2: ~7 GB).
  c.cache_features = False
  c.distributed = False  # jax.distributed.initialize() for multi-host runs (TPU pods).
  return c


def localize_config() -> ml_collections.ConfigDict:
  """Inference of Sec. 3.3 as in the official test.py / detectionMAP.py (localize/tcam.py)."""
  c = ml_collections.ConfigDict()
  # Video-level class scores p: mean of the top-k snippets of `class_score_source`:
  # 'refined' (lambda' * T, official detectionMAP.py) or 'tcam' (T, paper).
  c.class_score_source = 'refined'  # paper: 'tcam'.
  c.topk_ratio = 8  # k = max(1, topk_rounding of s / ratio). ActivityNet1.2 official: 4.
  c.topk_rounding = 'floor'  # 'floor' (official scorer) or 'ceil'. paper: 'ceil'.
  # Relevant classes: p > class_threshold * max(p) and p > 0.
  c.class_threshold = 0.5
  # Official ActivityNet rule instead: at most `activitynet_max_classes` classes, those with
  # p > max(floor, the (max_classes + 1)-th highest p), floor = activitynet_high_floor if any
  # p > activitynet_high_floor else activitynet_class_floor.
  c.activitynet_class_rule = False  # ActivityNet1.2 official: True.
  c.activitynet_max_classes = 2
  c.activitynet_class_floor = 0.5
  c.activitynet_high_floor = 1.0
  # lambda' scaled by attention_scale / max(lambda') before r_c = lambda' * T_c.
  c.rescale_attention = False  # ActivityNet1.2 official: True.
  c.attention_scale = 2.0
  c.proposal_thresholds = (0.025, 0.475, 0.025)  # start, stop (inclusive), step. paper: stop 0.5.
  c.min_proposal_snippets = 2
  # Outer region: floor(inflation * width) snippets (at least min_outer_snippets) on each side,
  # cut at the video borders; a side that would be empty is left out.
  c.inflation = 0.25
  c.min_outer_snippets = 1
  # S_o: 'sides' (mean of the two side means, official) or 'pooled' (mean over all outer snippets).
  c.outer_mean = 'sides'  # paper (as written): 'pooled'.
  # Official: drop a proposal when (S_o - S_i + 1) / 2 > outer_rejection_threshold.
  c.outer_rejection = True  # paper: False.
  c.outer_rejection_threshold = 0.7
  c.nms_threshold = 0.3  # Class-wise NMS, IoU >= this is suppressed. paper: 0.5.
  # Keep detections with score >= score_threshold * best score, the best taken per (video, class)
  # ('class', official) or per video ('video', paper).
  c.score_threshold = 0.1
  c.score_threshold_scope = 'class'  # paper: 'video'.
  c.oic = oic_config()
  c.hamnet = hamnet_config()
  return c


def oic_config() -> ml_collections.ConfigDict:
  """SAL's 'oic' localizer (d2net_jax/localize/oic.py), THUMOS14 values of the authors' code.

  ActivityNet1.3 code: class_threshold 0.1, comb_weights (0.6, 0.2, 0.2), topk_ratio 4,
  topk_min_one False, beta_sc 0.5, nms_threshold 0.7, soft_alpha 0.35 (the rest as THUMOS14).
  """
  c = ml_collections.ConfigDict()
  c.class_threshold = 0.25  # Classes with p_c >= this (argmax p when none). ActivityNet: 0.1.
  # comb = w[0] softmax(cas) + w[1] a_r (RGB actionness) + w[2] a_f (flow actionness).
  c.comb_weights = (1 / 3, 1 / 3, 1 / 3)  # ActivityNet: (0.6, 0.2, 0.2).
  c.topk_ratio = 8  # k = max(1, s // topk_ratio) snippets of comb per class. ActivityNet: 4.
  # False: k = s // topk_ratio, as the ActivityNet code, whose k = 0 for a video of fewer than
  # topk_ratio snippets gives NaN scores and no detection (its presets set False). The THUMOS14
  # code never meets k = 0 (every test video is resampled to 750 snippets).
  c.topk_min_one = True
  # p = softmax((1 - beta_sc) * top-k mean of cas + beta_sc * sc). ActivityNet: 0.5.
  c.beta_sc = 0.65
  c.scale = 24  # Linear upsampling factor of comb before thresholding.
  # start, stop (inclusive), step; np.arange values 0.1, 0.2, 0.30000000000000004, ..., 0.9.
  c.thresholds = (0.1, 0.9, 0.1)
  # Outer region: int(s - lambda L) .. int(e + lambda L) (the code passes gamma, 0.2, into its
  # lambda_ argument). 'basnet': int() truncation, ceil(lambda L) points left and floor(lambda L)
  # right; 'symmetric': floor(lambda L) on both sides.
  c.outer_lambda = 0.2
  c.outer_rounding = 'basnet'
  c.gamma = 0.2  # score = inner - outer + gamma * p_c.
  # The code's `if temp_list.any()`: a (class, threshold) whose only position above the threshold
  # is index 0 gives no proposal.
  c.skip_index0_quirk = True
  # 'basnet_soft': BaS-Net soft-NMS (suppressed proposals kept once with score *
  # exp(-IoU^2 / soft_alpha), never suppressed again); 'hard': suppressed proposals dropped.
  c.nms = 'basnet_soft'
  c.nms_threshold = 0.4  # IoU with "+1" lengths in seconds. ActivityNet: 0.7.
  c.soft_alpha = 0.3  # ActivityNet: 0.35.
  return c


def hamnet_config() -> ml_collections.ConfigDict:
  """CO2-Net's 'hamnet' localizer (d2net_jax/localize/hamnet.py), the authors' values (both
  datasets)."""
  c = ml_collections.ConfigDict()
  c.class_topk_ratio = 10  # p = softmax(top-k mean of cas * attention), k = max(1, s // 10).
  c.class_threshold = 0.2  # Classes with p_c >= this (argmax p when none).
  c.thresholds = (0.1, 0.9, 10)  # np.linspace(start, stop, count) on the attention (a > theta).
  # The code's `if temp_list.any()`: a threshold passed by snippet 0 alone gives no proposal.
  c.skip_index0_quirk = True
  c.outer_lambda = 0.25  # Outer region int(s - lambda L) .. int(e + lambda L).
  c.gamma = 0.2  # score = inner - outer + gamma * p_c (--gamma-oic).
  c.nms_sigma = 0.3  # Gaussian soft-NMS: scores * exp(-IoU^2 / sigma); nothing is discarded.
  return c


def evaluation_config() -> ml_collections.ConfigDict:
  """Detection mAP with ActivityNet eval_detection.py semantics (d2net_jax/evaluation/mean_ap.py)."""
  c = ml_collections.ConfigDict()
  # THUMOS14 0.1:0.7 (official D2-Net scorer: 0.1:0.5); ActivityNet1.2: 0.5:0.95 step 0.05.
  c.tiou_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
  c.use_ambiguous = True  # Drop detections overlapping Ambiguous_test.txt regions, if given.
  # Detections in videos outside the scored ground truth: 'false_positive' (the ActivityNet
  # scorer), 'drop', or 'error'. Always counted in the output.
  c.unknown_videos = 'false_positive'
  # 'activitynet' (d2net_jax/evaluation/mean_ap.py: the field's standard, highest-tIoU matching) or
  # 'd2net_official' (d2net_jax/evaluation/official.py: the official detectionMAP.getLocMAP,
  # which scored the published numbers: snippet grid, first GT over the threshold). The
  # official_* fields below are read by 'd2net_official' only.
  c.protocol = 'activitynet'
  # Official GT: 'thumos14_npy' (THUMOS14 branch: <data.path>/<data.name>-Annotations/
  # test_gt_segments.npy, or official_gt_file; used for test-subset videos, other videos are
  # scored on their annotations) or 'annotations' (ActivityNet1.2 branch: the dataset's instances).
  c.official_gt = 'thumos14_npy'
  c.official_gt_file = ''
  # The official snippet grid: seconds -> snippets as seconds * fps / frames (0.64 s snippets).
  c.official_fps = 25.0
  c.official_frames_per_snippet = 16
  # Official bug: a class without detections gives it and every later class AP 0 (a warning says
  # so when it fires). False: only that class gets AP 0.
  c.zero_ap_after_empty_class = True
  return c


def base_config() -> ml_collections.ConfigDict:
  """THUMOS14 with the official code's settings."""
  config = ml_collections.ConfigDict()
  config.method = 'd2net'  # d2net_jax.methods.names(): 'd2net', 'mil', ...
  config.preset = ''  # The preset that built it, e.g. 'configs/thumos14.py:official_protocol'.
  config.data = data_config()
  config.train = train_config()
  config.localize = localize_config()
  config.evaluation = evaluation_config()
  for name, section in methods.config_sections().items():
    config[name] = section
  return config


def parse_preset_arg(arg, preset: str, flags=(), keys=()):
  """(method, {flag}, {key: value}) of a preset argument such as 'sal', 'd2net,paper', 'smoke',
  'dfe,base=sal'; tokens are separated by commas, in any order.

  A token is a registered method name, one of `flags`, or `key=value` with key in `keys`. The
  method defaults to 'd2net'. ValueError naming the valid tokens otherwise.
  """
  method, found_flags, values = 'd2net', set(), {}
  valid = (f"methods {', '.join(methods.names())}" + (f"; flags {', '.join(flags)}" if flags else '')
           + (f"; {', '.join(k + '=...' for k in keys)}" if keys else ''))
  for token in (t.strip() for t in str(arg or '').split(',')):
    if not token:
      continue
    key, eq, value = token.partition('=')
    if token in methods.names():
      method = token
    elif token in flags:
      found_flags.add(token)
    elif eq and key in keys:
      values[key] = value
    else:
      raise ValueError(f'{preset}: unknown argument {token!r} (valid: {valid})')
  own = methods.get(method).config_sections().get(method, {})
  for key, value in values.items():
    if key not in own:
      raise ValueError(f'{preset}: {key}={value} does not apply to method {method!r}')
  return method, found_flags, values


def format_preset_arg(method: str, flags=(), values=None) -> str:
  """The preset argument `parse_preset_arg` reads back: 'dfe,paper,base=sal'. A preset that
  builds on another (configs/synthetic.py on configs/thumos14.py) hands its values on with it."""
  return ','.join([method] + list(flags) + [f'{k}={v}' for k, v in (values or {}).items()])


def apply_overrides(config, overrides) -> ml_collections.ConfigDict:
  """Sets 'section.field' (or 'section.sub.field') -> value; a misspelt field raises."""
  for dotted, value in overrides.items():
    *path, field = dotted.split('.')
    node = config
    for part in path:
      node = node[part]
    if field not in node:
      raise KeyError(f'no config field {dotted!r}')
    node[field] = value
  return config


def apply_method_preset(config, preset: str) -> ml_collections.ConfigDict:
  """Applies `config.method`'s settings for dataset preset `preset` (`Method.presets`; for a
  method that wraps another, e.g. DFE, the wrapped method's first: `methods.preset_overrides`).
  Set the method's `key=value` preset values (`apply_preset_values`, e.g. base=sal) before."""
  return apply_overrides(config, methods.preset_overrides(config, preset))


# `key=value` tokens of preset arguments (`configs/synthetic.py:dfe,base=d2net`) and the field of
# the method's own section each sets. Presets apply them before the method's dataset settings
# (`apply_method_preset`): base=sal decides that SAL's settings apply to DFE.
PRESET_KEYS = ('base',)


def apply_preset_values(config, values, preset: str) -> ml_collections.ConfigDict:
  """Sets `config.<method>.<key> = value` for each preset `key=value` (e.g. base=d2net sets
  config.dfe.base for method dfe); ValueError (one line) when the method has no such field."""
  for key, value in values.items():
    section = config.get(config.method)
    if section is None or key not in section:
      raise ValueError(f'{preset}: {key}={value} does not apply to method {config.method!r}')
    section[key] = value
  return config
