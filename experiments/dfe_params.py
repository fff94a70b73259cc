r"""DFE's parameters and inference FLOPs with and without its global module (GFE + memory).

  python experiments/dfe_params.py                 # synthetic demo size and THUMOS14 size
  python experiments/dfe_params.py --out runs/experiments/dfe_params
  python experiments/dfe_params.py --base co2net   # over DFE's default base

Sizes: 'synthetic' = configs/synthetic.py:dfe,base=BASE (D = 256, C = 20, T = 256 snippets);
'thumos14' = configs/thumos14.py:dfe,base=BASE (D = 2048, C = 20, T = 750 snippets, SAL's
num_segments and D2-Net's max_seqlen). BASE: --base, d2net by default (the table of
docs/dfe.md). FLOPs are XLA's estimate for one video of T snippets
(`jax.jit(forward).lower(...).cost_analysis()['flops']`; nothing is run), for the deployed local
branch (base.encode -> LFE -> heads) and for the global branch (-> GFE -> heads), which is what
inference would cost without distillation. Parameters are counted on `jax.eval_shape` of init.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Dict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

SIZES = {'synthetic': ('synthetic', 256), 'thumos14': ('thumos14', 750)}


def _shapes(config, num_classes: int, feature_dim: int, length: int = 8):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  model = methods.get('dfe').build_model(config, num_classes, feature_dim)
  features = jax.ShapeDtypeStruct((1, length, feature_dim), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, length), jnp.float32)
  params = jax.eval_shape(lambda f, m: model.init(jax.random.PRNGKey(0), f, m)['params'],
                          features, mask)
  return model, params


def parameter_counts(config, num_classes: int, feature_dim: int) -> Dict[str, int]:
  """{'base', 'lfe', 'gfe', 'total'}: parameters per part of the DFE model."""
  import jax  # pylint: disable=import-outside-toplevel
  _, params = _shapes(config, num_classes, feature_dim)
  counts = {part: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params.get(part, {})))
            for part in ('base', 'lfe', 'gfe')}
  counts['total'] = sum(counts.values())
  return counts


def inference_flops(config, num_classes: int, feature_dim: int, length: int) -> Dict[str, float]:
  """{'local', 'global'}: XLA's FLOP estimate of one video's forward through each branch."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax.methods import dfe  # pylint: disable=import-outside-toplevel
  model, params = _shapes(config, num_classes, feature_dim)
  state = jax.eval_shape(lambda: dfe.init_state(config, num_classes, feature_dim))
  features = jax.ShapeDtypeStruct((1, length, feature_dim), jnp.float32)
  mask = jax.ShapeDtypeStruct((1, length), jnp.float32)
  flops = {}
  for branch in ('local', 'global'):
    c = config.copy_and_resolve_references()
    c.dfe.inference_branch = branch
    fn = lambda p, s, f, m, c=c: dfe.inference_outputs(model, p, s, f, m, c)
    if branch == 'local':
      p, s = jax.eval_shape(dfe.export_inference, params, state)
    else:
      p, s = params, state
    cost = jax.jit(fn).lower(p, s, features, mask).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops[branch] = float(cost['flops'])
  return flops


def measure(size: str, base: str = 'd2net') -> Dict[str, float]:
  preset, length = SIZES[size]
  config = _common.load_module(_common.ROOT / 'configs' / f'{preset}.py',
                               f'd2net_configs_{preset}').get_config(f'dfe,base={base}')
  c, d = config.data.num_classes, config.data.feature_dim
  counts = parameter_counts(config, c, d)
  flops = inference_flops(config, c, d, length)
  base = config.copy_and_resolve_references()
  base.dfe.lfe.kind = 'none'
  base_flops = inference_flops(base, c, d, length)['local']
  return dict(counts, size=size, feature_dim=d, num_classes=c, snippets=length,
              flops_local=flops['local'], flops_global=flops['global'], flops_base=base_flops)


def markdown(rows) -> str:
  header = ['size', 'D, C, T', 'base params', 'LFE params', 'GFE params', 'deployed params',
            'training params', 'GFLOPs base', 'GFLOPs deployed (local)', 'GFLOPs global branch']
  table = [[r['size'], f"{r['feature_dim']}, {r['num_classes']}, {r['snippets']}",
            f"{r['base']:,}", f"{r['lfe']:,}", f"{r['gfe']:,}", f"{r['total'] - r['gfe']:,}",
            f"{r['total']:,}", f"{r['flops_base'] / 1e9:.3f}", f"{r['flops_local'] / 1e9:.3f}",
            f"{r['flops_global'] / 1e9:.3f}"] for r in rows]
  return _common.markdown_table(header, table)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='synthetic,thumos14')
  parser.add_argument('--base', default='d2net', help="dfe.base (docs/dfe.md's table: d2net)")
  parser.add_argument('--out', type=pathlib.Path, default=None)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  meta = _common.run_metadata(sys.argv[1:] if argv is None else argv)
  rows = [measure(s, args.base) for s in args.sizes.split(',') if s]
  text = (_common.markdown_header(f'DFE parameters and inference FLOPs (dfe.base={args.base})',
                                  meta, ['defaults of the dfe section (LFE: 1 self-attention '
                                         'block, 8 heads; GFE: proj_dim 512); base = '
                                         f'{args.base} alone (dfe.lfe.kind=none)'])
          + '\n' + markdown(rows))
  print(text)
  if args.out:
    _common.write_outputs(args.out, text, {'meta': meta, 'rows': rows})
  return 0


if __name__ == '__main__':
  sys.exit(main())
