"""Evaluation that cannot quietly lose points (issue 14, section 3): zero-length ground-truth
instances (clipped, starting after the video's end) counted and named; empty detections warned."""

import warnings

import pytest

from d2net_jax.evaluation import mean_ap as evaluation

GT = {'database': {
    'v1': {'subset': 'test', 'duration': 10.0, 'annotations': [
        {'segment': [1.0, 3.0], 'label': 'A'}, {'segment': [10.0, 10.0], 'label': 'A'}]},
    'v2': {'subset': 'test', 'duration': 8.0, 'annotations': [
        {'segment': [2.0, 4.0], 'label': 'B'}]},
}}
DETECTIONS = {'results': {'v1': [{'label': 'A', 'score': 0.9, 'segment': [1.0, 3.0]},
                                 {'label': 'A', 'score': 0.5, 'segment': [9.0, 10.0]}],
                          'v2': [{'label': 'B', 'score': 0.8, 'segment': [2.0, 4.0]}]}}


def test_zero_length_instances_are_counted_named_and_kept():
  result = evaluation.evaluate_detections(GT, DETECTIONS, (0.5,), subset='test')
  assert result.unmatchable_instances == ('v1 A [10, 10]',)
  assert result.to_dict()['num_unmatchable_instances'] == 1
  assert result.num_positives.tolist() == [2, 1]  # Kept: class A's recall is at most 1/2.
  assert result.ap[0, 0] == pytest.approx(0.5)
  assert '1 zero-length GT instances kept' in result.protocol
  table = evaluation.format_table(result)
  assert 'WARNING: 1 of 3 GT instances have zero length' in table and 'v1 A [10, 10]' in table


def test_no_zero_length_no_warning():
  gt = {'database': {'v1': {'subset': 'test', 'duration': 10.0, 'annotations': [
      {'segment': [1.0, 3.0], 'label': 'A'}]}, 'v2': GT['database']['v2']}}
  result = evaluation.evaluate_detections(gt, DETECTIONS, (0.5,), subset='test')
  assert not result.unmatchable_instances and 'zero length' not in evaluation.format_table(result)


def test_empty_detections_score_with_a_warning():
  with pytest.warns(UserWarning, match='no detections at all'):
    result = evaluation.evaluate_detections(GT, {'results': {}}, (0.5,), subset='test')
  assert result.average_mAP == 0.0
  assert 'WARNING: no detections at all' in evaluation.format_table(result)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    evaluation.evaluate_detections(GT, DETECTIONS, (0.5,), subset='test')
