"""DFE's config section `dfe` (spec ../shared/methods/SAL-DFE-spec.md, section 3.6).

Only the module list of DFE is known (its abstract): local feature enhancement (LFE), a global
memory of class representations (GMM), global feature enhancement (GFE) from that memory, and a
global -> local distillation loss, with GFE dropped at inference. Every other choice is OUR
design (spec section 3.2-3.5), one field each, defaulting to the spec's value.

The spec writes `model.dfe.X` and `loss.dfe.X`; here they are `dfe.X` and `dfe.loss.X` (the
`model` and `loss` sections belong to D2-Net, so over D2-Net `--config.model.*` /
`--config.loss.*` configure the base; over CO2-Net, DFE's default base, `--config.co2net.*`; over
SAL, `--config.sal.*`).
"""

import ml_collections


def dfe_config() -> ml_collections.ConfigDict:
  """The `dfe` section: base, LFE, GMM, GFE and the loss weights."""
  c = ml_collections.ConfigDict()
  # The wrapped base method, any registered method with a `Method.feature_split`: 'co2net' (the
  # spec's default; its `co2net` section), 'd2net' (its `model` / `loss` sections), 'sal' (its
  # `sal` section). The paper's base is unknown. The base's localizer, sampling and dataset
  # presets apply (`configs/synthetic.py:dfe,base=sal`). It was 'd2net' before co2net declared
  # its split: a saved config without it means 'd2net' (config.CHANGED_DEFAULTS).
  c.base = 'co2net'
  c.inference_branch = 'local'  # 'local' (the abstract: GFE removed) or 'global' (upper bound).
  c.shared_heads = True  # The global branch uses the base's heads (only True is implemented).

  c.lfe = ml_collections.ConfigDict()
  c.lfe.kind = 'self_attention'  # 'self_attention' | 'dilated_conv' | 'none' (ablation).
  c.lfe.num_heads = 8
  c.lfe.num_layers = 1  # Pre-LN transformer blocks ('dilated_conv': 3 blocks).
  c.lfe.window = 0  # 0: full attention over the valid snippets; > 0: |t - t'| <= window.
  c.lfe.ffn_mult = 1  # FFN width = ffn_mult * E.
  c.lfe.attn_dropout = 0.1
  c.lfe.dropout = 0.3  # On the attention / FFN / conv residual branches.
  c.lfe.positional = 'none'  # 'none' | 'sinusoidal' (added to the block input).
  c.lfe.dilations = (1, 2, 4)  # 'dilated_conv': one residual block per dilation, kernel 3.
  c.lfe.leaky_slope = 0.2  # 'dilated_conv' activation.

  c.gmm = ml_collections.ConfigDict()
  c.gmm.slots_per_class = 1  # S; > 1: the slot most similar to the batch mean is updated.
  # 'ema' (state, no gradient). The spec's 'learned' is not implemented. Read it as
  # c.gmm['update']: `.update` is ConfigDict's method.
  c.gmm['update'] = 'ema'
  c.gmm.momentum = 0.9  # mu. Spec: 0.9 THUMOS14, 0.99 ActivityNet.
  c.gmm.source = 'cas'  # r_bc from the top-k snippets of cas_c; 'attention': att-weighted.
  c.gmm.topk_ratio = 8  # k_m = max(1, floor(T_valid / topk_ratio)).
  c.gmm.normalize = True  # L2-normalise the batch class means and the EMA result.

  c.gfe = ml_collections.ConfigDict()
  c.gfe.proj_dim = 512  # d of the query / key / value projections.
  c.gfe.temperature = 1.0  # tau_g of the slot softmax.
  c.gfe.dropout = 0.3  # On G before the residual sum.
  c.gfe.gate = False  # F_G = F_L + sigmoid(W_g [F_L; G]) * G instead of F_L + G.
  c.gfe.restrict_to_labels = False  # Privileged teacher: attend to the video's GT classes only.

  c.loss = ml_collections.ConfigDict()
  c.loss.w_local = 1.0  # L = w_local L_base(out_L) + w_global L_base(out_G) + lambda_kd L_kd.
  c.loss.w_global = 1.0
  c.loss.lambda_kd = 1.0
  c.loss.kd_temperature = 1.0  # tau of L_kd_cas.
  # L_kd_cas over classes: 'softmax' (spec: KL of the class softmax) or 'sigmoid' (per-class
  # binary KL, matching D2-Net's sigmoid classifiers).
  c.loss.kd_cas = 'softmax'
  c.loss.w_kd_cas = 1.0
  c.loss.w_kd_att = 1.0  # Only for bases with an attention head (not D2-Net).
  c.loss.w_kd_feat = 0.0
  c.loss.kd_start_step = 0
  c.loss.global_updates_backbone = True  # False: L_base(out_G) trains GFE only.
  return c
