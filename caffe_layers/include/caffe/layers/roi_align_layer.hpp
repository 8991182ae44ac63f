#ifndef CAFFE_ROI_ALIGN_LAYER_HPP_
#define CAFFE_ROI_ALIGN_LAYER_HPP_

#include <cmath>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/// Geometry parameters shared by RoIAlign and AdjustedRoIAlign.
struct RoIAlignConfig {
  int pooled_h, pooled_w;
  float spatial_scale;
  int sampling_ratio;
  bool aligned;
};

/// Reads and CHECKs the geometry fields of a RoIAlignParameter or an
/// AdjustedRoIAlignParameter (pooled sizes > 0, spatial_scale finite and > 0: an infinite
/// scale would put every sample outside the features and give a silent all-zero output).
template <typename ParamT>
RoIAlignConfig MakeRoIAlignConfig(const ParamT& p, const std::string& layer_name) {
  CHECK_GT(p.pooled_h(), 0) << "layer " << layer_name << ": pooled_h must be > 0";
  CHECK_GT(p.pooled_w(), 0) << "layer " << layer_name << ": pooled_w must be > 0";
  CHECK(p.spatial_scale() > 0 && std::isfinite(p.spatial_scale())) << "layer " << layer_name
      << ": spatial_scale must be > 0 and finite, got " << p.spatial_scale();
  RoIAlignConfig c;
  c.pooled_h = static_cast<int>(p.pooled_h());
  c.pooled_w = static_cast<int>(p.pooled_w());
  c.spatial_scale = p.spatial_scale();
  c.sampling_ratio = p.sampling_ratio();
  c.aligned = p.aligned();
  return c;
}

/// CHECKs that a rois blob is R x 5 (or R x 5 x 1 x 1); returns R.
template <typename Dtype>
int CheckRoIsShape(const Blob<Dtype>& rois, int columns, const std::string& layer_name,
                   const std::string& what);

/// CHECKs that every batch index of an R x 5 rois blob is an integer in [0, num_images)
/// and that every coordinate is finite (a NaN would make the sampling grid undefined).
template <typename Dtype>
void CheckRoIsBatchIndex(const Blob<Dtype>& rois, int num_images, const std::string& layer_name);

/// The one RoIAlign forward / backward (CPU loop and GPU kernel share roi_util's
/// per-bin functions). rois: num_rois x 5 (b, x1, y1, x2, y2); top: num_rois x C x Ph x Pw.
/// The backward accumulates into bottom_diff (the caller zeroes it).
template <typename Dtype>
void RoIAlignForwardCPU(const Dtype* bottom, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* top);
template <typename Dtype>
void RoIAlignBackwardCPU(const Dtype* top_diff, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* bottom_diff);
#ifndef CPU_ONLY
template <typename Dtype>
void RoIAlignForwardGPU(const Dtype* bottom, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* top);
template <typename Dtype>
void RoIAlignBackwardGPU(const Dtype* top_diff, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* bottom_diff);
#endif

/**
 * @brief Mask R-CNN RoIAlign with Detectron / torchvision semantics.
 *
 * Bottoms: features N x C x H x W; rois R x 5 (batch index, x1, y1, x2, y2 in image
 * coordinates). Top: R x C x pooled_h x pooled_w, each bin the average of its bilinear
 * samples (sampling_ratio per axis, or adaptive ceil(roi_size / pooled_size), at most
 * roi_util::kMaxAdaptiveGrid, when <= 0).
 * Differentiable w.r.t. the features only.
 */
template <typename Dtype>
class RoIAlignLayer : public Layer<Dtype> {
 public:
  explicit RoIAlignLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "RoIAlign"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  RoIAlignConfig config_;
};

}  // namespace caffe

#endif  // CAFFE_ROI_ALIGN_LAYER_HPP_
