"""Evaluation: MHP's AP^p (any threshold), avg.AP, PCP, the global parser's mIoU; the predictions
format on disk; `gpsnet evaluate-predictions` (docs/evaluation.md). Does not import caffe."""
from __future__ import annotations

from gpsnet.eval.evaluate import (evaluate_folder, evaluate_folders, format_table,
                                  write_gt_as_predictions)
from gpsnet.eval.metrics import (THRESHOLDS, GlobalAccumulator, InstanceAccumulator,
                                 pair_statistics, voc_ap)
from gpsnet.eval.predictions import PredictionsFolder, PredictionWriter

__all__ = ["evaluate_folder", "evaluate_folders", "format_table", "write_gt_as_predictions",
           "THRESHOLDS", "GlobalAccumulator", "InstanceAccumulator", "pair_statistics", "voc_ap",
           "PredictionsFolder", "PredictionWriter"]
