"""Scoring detections (NumPy; knows nothing of methods or training).

  mean_ap.py       detection mAP with ActivityNet semantics (`evaluate_detections`), tIoU parsing,
                   ambiguous regions, tables
  official.py      `evaluation.protocol='d2net_official'`: the official D2-Net scorer
  ground_truth.py  ground truth from ActivityNet JSON / a dataset, ambiguous regions
  report.py        tables and per-class reports of a result
  detections.py    the detections JSON (ActivityNet results format) written and read
  plotting.py      one video's class scores, attention, ground truth and detections (Fig. 4)
"""
