"""D2-Net's config sections: `model` (Sec. 3, Fig. 2) and `loss` (Eq. 1-11).

They keep the names they had before methods were plug-ins (`--config.model.*`, `--config.loss.*`),
so existing presets, command lines and run folders keep working. Defaults are the official code's
THUMOS14 settings; a `paper:` comment gives the paper's value where it differs.
"""

import ml_collections


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
  # Eq. 3 pairing: 'cycle' (each video against another one, a random single cycle; a weight only
  # where both embeddings exist) or 'official' (random permutations within the foreground and
  # background lists, self-pairs possible, min(n_fg, n_bg) fg-bg weights written at foreground-
  # list positions: methods/d2net/pairing.py). The paper does not say.
  c.pairing = 'cycle'
  # Denoising term: 'pdmi' (Eq. 7), 'dmi' (Eq. 5), 'l1', 'bce', or 'none'.
  c.denoising = 'pdmi'
  c.pdmi_eps = 1e-5  # Singular values <= eps are ignored.
  # Snippet-level pDMI: 'filtered' (Eq. 7, singular values <= pdmi_eps ignored, as the official
  # video-level svddmi) or 'official' (the official snippet-level pDMI: U clamped at 1e-10, every
  # singular value kept).
  c.snippet_pdmi = 'filtered'
  # Eq. 9 foreground rows: 'gt_classes' (max of T over the video's labelled classes, official
  # code) or 'all_classes' (the paper's lambda(t), max over all classes).
  c.snippet_fg_attention = 'gt_classes'  # paper: 'all_classes'.
  # Y of Eq. 9 / 10: 'per_class' (each column divided by its count, official code) or 'count'
  # (the paper's 1/z and 1/n).
  c.joint_normalization = 'per_class'  # paper: 'count'.
  c.snippet_fg_threshold = 0.5  # Eq. 9: pseudo-foreground lambda' > this.
  c.snippet_bg_threshold = 0.5  # Eq. 9: pseudo-background lambda' < this. ActivityNet1.2: 0.3.
  # Eq. 10, official code: zero class scores below floor * max(p), renormalise to sum 1.
  c.video_score_floor = 0.2
  c.video_renormalize = True  # paper: False (Eq. 10 uses p as it is).
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
