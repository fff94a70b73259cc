"""DFE's global branch adds only the base-loss terms that depend on the enhanced features.

Over SAL, the terms computed from the actionness branches (L_act, L_mix, L_mc, and the rgb / flow
second-order CEs) never see F: a second copy of them in the global branch only trains those
branches twice (issue 21). The references below are written from each base's own outputs, not
from the bases' declarations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax import methods
from d2net_jax.methods import dfe
from d2net_jax.methods.sal import losses as sal_losses
from d2net_jax.training import train
from test_dfe import C, D, _config
import train_fixtures

pytestmark = pytest.mark.usefixtures('fast_compile')


def _feature_loss_reference(base, outputs, batch, config, key):
  """The base's loss terms whose gradient reaches F, weighted, from the base's outputs: all of
  D2-Net's loss (its outputs all come from F); over SAL w_mil L_mil + w_bg L_bg + w_se CE(sc)."""
  state = dict(methods.get(base).init_state(config, C, D), step=jnp.array(0))
  loss, aux = methods.get(base).loss_fn(outputs, batch, state, config, key)
  if base == 'd2net':
    return loss
  c = config.sal
  ce_video = jnp.mean(sal_losses.ce_per_video(outputs['sc'], batch['labels']))
  return c.w_mil * aux['loss_mil'] + c.w_bg * aux['loss_bg'] + c.w_se * ce_video


@pytest.mark.parametrize('base', ['d2net', 'sal'])
def test_global_branch_does_not_count_feature_independent_terms_twice(base):
  """With an empty memory F_G = F_L, so the global branch's outputs are the local branch's and
  its loss must be the reference above; the whole base loss there (loss_global == loss_local
  over SAL) is the double count."""
  config = _config(base, **{'loss.w_local': 0.0, 'loss.lambda_kd': 0.0})
  model, _, state = train.build(config, C, D)
  batch = train_fixtures.random_batch(0)
  (loss, aux), _ = jax.jit(lambda s, b: train.loss_and_grads(
      s, b, model=model, config=config, loss_fn=dfe.loss_fn))(state, batch)
  assert not np.any(state.method_state['filled'])
  outputs = model.apply({'params': state.params}, batch['features'], batch['mask'], train=True,
                        rngs={'dropout': jax.random.PRNGKey(1)})
  loss_key = jax.random.split(jax.random.fold_in(state.key, state.step))[0]  # The trainer's.
  want = _feature_loss_reference(base, outputs, batch, config, loss_key)
  np.testing.assert_allclose(aux['loss_global'], want, rtol=1e-5)
  np.testing.assert_allclose(loss, config.dfe.loss.w_global * want, rtol=1e-5)
  independent = {'sal': {'loss_act', 'loss_mix', 'loss_mc', 'loss_se_streams'}, 'd2net': set()}
  assert not {f'global_{t}' for t in independent[base]} & set(aux), sorted(aux)
