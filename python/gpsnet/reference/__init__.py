"""NumPy references of the project's C++/CUDA layers (tests and scripts/bench_layers share them)."""
from gpsnet.reference.roi_align_ref import (adjust_back, adjust_back_backward, adjust_rois,
                                            adjusted_roi_align, face_majority_select, roi_align,
                                            roi_align_backward)

__all__ = ["roi_align", "roi_align_backward", "face_majority_select", "adjust_rois",
           "adjusted_roi_align", "adjust_back", "adjust_back_backward"]
