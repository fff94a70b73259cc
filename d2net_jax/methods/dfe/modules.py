"""DFE's feature enhancement modules (spec section 3.3; OUR design, the abstract names them only).

  LFE  local feature enhancement: temporal interaction within each video, F -> F_L (B, T, E)
       'self_attention': pre-LN transformer blocks masked to the valid snippets;
       'dilated_conv': residual blocks F <- F + Drop(LReLU(conv_k3,d(F))), d in dilations.
  GFE  global feature enhancement: cross-attention from the snippets to the class memory,
       F_G = F_L + Drop(G), G = softmax_slots(Q K^T / (sqrt(d) tau) + log filled) V W_o.

Both keep padded snippets at zero and never let them reach a valid snippet.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from d2net_jax.methods import layers


def sinusoidal_positions(length: int, dim: int, dtype=jnp.float32) -> jax.Array:
  """(T, E) sin / cos positional code of the transformer (Vaswani et al. 2017)."""
  position = jnp.arange(length, dtype=jnp.float32)[:, None]
  freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
  code = jnp.zeros((length, dim), jnp.float32)
  code = code.at[:, 0::2].set(jnp.sin(position * freq))
  code = code.at[:, 1::2].set(jnp.cos(position * freq[:dim // 2]))
  return code.astype(dtype)


def attention_mask(mask: jax.Array, window: int = 0) -> jax.Array:
  """(B, 1, T, T) bool: query and key both valid (and |t - t'| <= window when window > 0)."""
  valid = mask > 0
  allowed = valid[:, None, :, None] & valid[:, None, None, :]
  if window > 0:
    t = jnp.arange(mask.shape[-1])
    allowed &= (jnp.abs(t[:, None] - t[None, :]) <= window)[None, None]
  return allowed


class MaskedSelfAttention(nn.Module):
  """Multi-head self-attention (B, T, E) -> (B, T, E) with W_o, attending where `allowed`
  (B, 1, T, T). The key projection has no bias: it would add the same logit to every key of a
  query, so its gradient is exactly 0 in theory and rounding noise in practice."""
  num_heads: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, allowed, train: bool = False):
    batch, length, width = x.shape
    heads = self.num_heads
    split = lambda y: y.reshape(batch, length, heads, width // heads)
    q = split(nn.Dense(width, name='query')(x))
    k = split(nn.Dense(width, use_bias=False, name='key')(x))
    v = split(nn.Dense(width, name='value')(x))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(width // heads)
    logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
    a = jax.nn.softmax(logits, axis=-1)
    a = nn.Dropout(self.dropout, deterministic=not train)(a)
    out = jnp.einsum('bhqk,bkhd->bqhd', a, v).reshape(batch, length, width)
    return nn.Dense(width, name='out')(out)


class SelfAttentionLFE(nn.Module):
  """num_layers pre-LN blocks: F1 = F + Drop(W_o MHA(LN F)), F_L = F1 + Drop(FFN(LN F1))."""
  num_heads: int = 8  # Attention heads; E must be divisible by it.
  num_layers: int = 1  # Pre-LN blocks.
  window: int = 0  # 0: attend to every valid snippet; > 0: only |t - t'| <= window.
  ffn_mult: int = 1  # FFN width = ffn_mult * E.
  attn_dropout: float = 0.1  # On the attention weights.
  dropout: float = 0.3  # On the attention and FFN residual branches.
  positional: str = 'none'  # 'sinusoidal': positions added to the block input.

  @nn.compact
  def __call__(self, f, mask, train: bool = False):
    m = mask[..., None].astype(f.dtype)
    width = f.shape[-1]
    if self.positional == 'sinusoidal':
      f = f + sinusoidal_positions(f.shape[1], width, f.dtype)[None] * m
    allowed = attention_mask(mask, self.window)
    for i in range(self.num_layers):
      h = nn.LayerNorm(name=f'ln_attn{i}')(f)
      h = MaskedSelfAttention(self.num_heads, self.attn_dropout, name=f'attn{i}')(
          h, allowed, train)
      f = (f + nn.Dropout(self.dropout, deterministic=not train)(h)) * m
      h = nn.LayerNorm(name=f'ln_ffn{i}')(f)
      h = nn.Dense(self.ffn_mult * width, name=f'ffn{i}_in')(h)
      h = nn.Dense(width, name=f'ffn{i}_out')(nn.gelu(h))
      f = (f + nn.Dropout(self.dropout, deterministic=not train)(h)) * m
    return f


class DilatedConvLFE(nn.Module):
  """One residual block per dilation d: F <- F + Drop(LReLU(conv_{k=3, d}(F))), masked."""
  dilations: tuple = (1, 2, 4)
  dropout: float = 0.3
  leaky_slope: float = 0.2

  @nn.compact
  def __call__(self, f, mask, train: bool = False):
    m = mask[..., None].astype(f.dtype)
    for i, d in enumerate(self.dilations):
      h = layers.masked_conv(f, mask, f.shape[-1], 3, dilation=int(d), name=f'conv{i}',
                             kernel_init=nn.linear.default_kernel_init)
      h = nn.leaky_relu(h, self.leaky_slope)
      f = (f + nn.Dropout(self.dropout, deterministic=not train)(h)) * m
    return f


def build_lfe(c) -> Optional[nn.Module]:
  """The LFE of `config.dfe.lfe` (None for kind 'none'), named 'lfe'."""
  if c.kind == 'self_attention':
    return SelfAttentionLFE(c.num_heads, c.num_layers, c.window, c.ffn_mult, c.attn_dropout,
                            c.dropout, c.positional, name='lfe')
  if c.kind == 'dilated_conv':
    return DilatedConvLFE(tuple(c.dilations), c.dropout, c.leaky_slope, name='lfe')
  if c.kind == 'none':
    return None
  raise ValueError(f"config.dfe.lfe.kind={c.kind!r}: must be one of "
                   "('self_attention', 'dilated_conv', 'none')")


def slot_attention(q: jax.Array, k: jax.Array, slot_ok: jax.Array,
                   temperature: float = 1.0) -> jax.Array:
  """A (B, T, N) = softmax over slots of q k^T / (sqrt(d) tau) + log(slot_ok); rows without an
  allowed slot are 0. q (B, T, d), k (N, d), slot_ok (N,) or (B, N) bool."""
  logits = jnp.einsum('btd,nd->btn', q, k) / (math.sqrt(q.shape[-1]) * temperature)
  ok = jnp.broadcast_to(slot_ok if slot_ok.ndim == 1 else slot_ok[:, None, :], logits.shape)
  logits = jnp.where(ok, logits, -jnp.inf)
  top = jnp.max(jnp.where(ok, logits, 0.0), axis=-1, keepdims=True)
  e = jnp.where(ok, jnp.exp(logits - jax.lax.stop_gradient(top)), 0.0)
  return e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), 1e-30)


class GFE(nn.Module):
  """Cross-attention from F_L (B, T, E) to the memory (C, S, E): F_G (B, T, E), spec 3.3.

  Q = LN(F_L) W_q, K = M W_k, V = M W_v (d = proj_dim), M = stop_gradient(memory) as (C S, E);
  slots of classes not yet filled (and, with slot_ok (B, C S), slots a video may not read) are
  masked out; G = (A V) W_o, G = 0 where no slot is allowed; F_G = F_L + Drop(G), or with
  `gate` F_L + sigmoid(W_g [F_L; G]) * G. Zero at padded snippets.
  """
  proj_dim: int = 512
  temperature: float = 1.0
  dropout: float = 0.3
  gate: bool = False

  @nn.compact
  def __call__(self, f_l, mask, memory, filled, slot_ok=None, train: bool = False):
    num_classes, slots, width = memory.shape
    mem = jax.lax.stop_gradient(memory).reshape(num_classes * slots, width).astype(f_l.dtype)
    ok = jnp.repeat(filled.astype(bool), slots)
    if slot_ok is not None:
      ok = ok[None, :] & slot_ok.astype(bool)
    q = nn.Dense(self.proj_dim, name='query')(nn.LayerNorm(name='ln')(f_l))
    k = nn.Dense(self.proj_dim, use_bias=False, name='key')(mem)  # A key bias is softmax-inert.
    v = nn.Dense(self.proj_dim, name='value')(mem)
    a = slot_attention(q, k, ok, self.temperature)
    any_ok = jnp.any(ok, axis=-1)
    any_ok = any_ok[None, None, None] if any_ok.ndim == 0 else any_ok[:, None, None]
    g = jnp.where(any_ok, nn.Dense(width, name='out')(jnp.einsum('btn,nd->btd', a, v)), 0.0)
    if self.gate:
      gate = nn.sigmoid(nn.Dense(width, name='gate')(jnp.concatenate([f_l, g], axis=-1)))
      f_g = f_l + gate * g
    else:
      f_g = f_l + nn.Dropout(self.dropout, deterministic=not train)(g)
    return f_g * mask[..., None].astype(f_l.dtype)
