"""The one config schema every preset in `configs/` starts from.

`base_config()` returns the official D2-Net code's THUMOS14 settings. Where the paper and the
official code disagree, the field defaults to the official code's value (it produced the published
numbers) and its comment says `paper:` with the paper's value; README.md lists each difference.

Sections: `data`, `model`, `loss`, `train`, `localize`, `evaluation`. Presets import this module,
call `base_config()` and override a few fields; every field can be overridden on the command line
(`--config.train.batch_size=4`).
"""

import ml_collections


def data_config() -> ml_collections.ConfigDict:
  """Where the features come from and how they are batched."""
  c = ml_collections.ConfigDict()
  # One of: 'synthetic' (generated on first use into `path`), 'hdf5' (our store), 'wtalc'
  # (W-TALC / D2-Net .npy layout), 'stpn' (STPN / BaS-Net per-video .npy layout).
  c.kind = 'hdf5'
  c.path = ''  # File or folder of the dataset; for 'synthetic' the cache folder ('' = workdir).
  c.name = 'Thumos14reduced'  # W-TALC file prefix: <name>-I3D-JOINTFeatures.npy, <name>-Annotations/.
  # D: RGB in the first D/2 channels, optical flow in the second. Checked against the data.
  c.feature_dim = 2048
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
  c.max_seqlen = 750  # Training crop length (snippets); batches are padded to this.
  c.eval_bucket = 64  # Evaluation pads each video to a multiple of this many snippets.
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
  return c


def model_config() -> ml_collections.ConfigDict:
  """The two-stream temporal convolution network (Sec. 3, Fig. 2)."""
  c = ml_collections.ConfigDict()
  c.kernel_size = 3  # Layers 1, 2. ActivityNet1.2: 5.
  c.dilation = 1  # ActivityNet1.2: 2.
  c.classifier_kernel_size = 1  # Layer 3 (official code). ActivityNet1.2 official: 5.
  c.classifier_dilation = 1  # ActivityNet1.2 official: 2.
  c.leaky_slope = 0.2
  c.residual = True  # Official code: x1 = act(conv(F)) + F, x2 = act(conv(x1)) + x1. paper: none.
  c.dropout_rate = 0.7  # Official code, before the classifier, training only. paper: none.
  c.init_std = 0.01  # Official code: conv weights N(0, 0.01), zero bias.
  # Official code hands the post-dropout activations to the losses during training.
  c.embeddings_after_dropout = True
  return c


def loss_config() -> ml_collections.ConfigDict:
  """L = L_Dis + L_D (Eq. 1, 4, 11) and the official code's choices around it."""
  c = ml_collections.ConfigDict()
  # Video-level top-k pooling: k = ceil(s / topk_ratio). ActivityNet1.2 official: 4.
  c.topk_ratio = 8
  c.min_snippets = 5  # Official code skips videos with fewer valid snippets (and no positive label).
  # Discriminative term: 'd2net' (Eq. 4), 'focal' (Eq. 4 with w = 0, L_F), 'bce' (L_CE).
  c.discriminative = 'd2net'
  c.beta = 2.0  # Focusing exponent.
  c.gamma = 0.01  # Intra-class compactness weight.
  c.prob_clip = 1e-3  # p clamped to [clip, 1 - clip].
  c.positive_class_weight = True  # Official code: positive terms times C. paper: none.
  c.class_reduction = 'mean'  # Eq. 4 over classes: 'mean' (official code). paper: 'sum'.
  c.fg_threshold = 0.5  # tau of Eq. 2 for lambda.
  c.bg_threshold = 0.5  # tau of Eq. 2 for lambda_b = 1 - lambda. ActivityNet1.2 official: 0.8.
  c.normalize_attention = True  # Official code divides Eq. 2 by the kept attention. paper: sum.
  # Denoising term: 'pdmi' (Eq. 7), 'dmi' (Eq. 5), 'l1', 'bce', or 'none'.
  c.denoising = 'pdmi'
  c.pdmi_eps = 1e-5  # Singular values <= eps are ignored.
  c.snippet_fg_threshold = 0.5  # Eq. 9: pseudo-foreground lambda' > this.
  c.snippet_bg_threshold = 0.5  # Eq. 9: pseudo-background lambda' < this. ActivityNet1.2: 0.3.
  # Eq. 10, official code: zero class scores below floor * max(p), renormalise to sum 1.
  c.video_score_floor = 0.2
  c.video_renormalize = True
  c.w_ds = 0.1  # Weight of L_DS. paper: one alpha = 0.2 for both terms (ActivityNet1.2: 1e-3).
  c.w_dv = 0.1  # Weight of L_DV. paper: alpha.
  # Official schedule: the denoising terms from this step on, and only every `pdmi_every` steps.
  c.pdmi_start_step = 1000  # paper: from the start.
  c.pdmi_every = 2  # paper: every step.
  # Background reference x_ref of Eq. 8.
  c.x_ref_momentum = 0.9
  # 'most_background': each video's single most background snippet, averaged (official code);
  # 'mean_bg': the mean of the x_bg of Eq. 2 (paper).
  c.x_ref_source = 'most_background'
  return c


def train_config() -> ml_collections.ConfigDict:
  """Optimiser, schedule, parallelism, checkpoints and logging (d2net_jax/train.py)."""
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
  """Inference of Sec. 3.3 as in the official test.py / detectionMAP.py (d2net_jax/localize.py)."""
  c = ml_collections.ConfigDict()
  # Video-level class scores p: mean of the top-k snippets of `class_score_source`:
  # 'refined' (lambda' * T, official detectionMAP.py) or 'tcam' (T, paper).
  c.class_score_source = 'refined'  # paper: 'tcam'.
  c.topk_ratio = 8  # k = max(1, round_down(s / ratio)). ActivityNet1.2 official: 4.
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
  return c


def evaluation_config() -> ml_collections.ConfigDict:
  """Detection mAP with ActivityNet eval_detection.py semantics (d2net_jax/evaluation.py)."""
  c = ml_collections.ConfigDict()
  # THUMOS14 0.1:0.7 (official D2-Net scorer: 0.1:0.5); ActivityNet1.2: 0.5:0.95 step 0.05.
  c.tiou_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
  c.use_ambiguous = True  # Drop detections overlapping Ambiguous_test.txt regions, if given.
  # Detections in videos outside the scored ground truth: 'false_positive' (the ActivityNet
  # scorer), 'drop', or 'error'. Always counted in the output.
  c.unknown_videos = 'false_positive'
  return c


def base_config() -> ml_collections.ConfigDict:
  """THUMOS14 with the official code's settings."""
  config = ml_collections.ConfigDict()
  config.data = data_config()
  config.model = model_config()
  config.loss = loss_config()
  config.train = train_config()
  config.localize = localize_config()
  config.evaluation = evaluation_config()
  return config
