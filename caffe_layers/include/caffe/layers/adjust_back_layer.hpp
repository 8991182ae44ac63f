#ifndef CAFFE_ADJUST_BACK_LAYER_HPP_
#define CAFFE_ADJUST_BACK_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Resamples per-RoI maps from the adjusted roi frame back to the original roi frame
 * (GPSNet paper section 4.2).
 *
 * Bottoms: maps R x K x Ph x Pw (in the adjusted roi frame); adjusted rois R x 5; original
 * rois R x 5. Top: R x K x Ph x Pw in the original roi frame. The centre of output pixel
 * (i, j), x = o.x1 + (j + 0.5) * ow / Pw in image coordinates, is read from the input map at
 * u = (x - a.x1) / aw * Pw - 0.5 (same for y) by the bilinear sampling of RoIAlign;
 * positions outside (RoIAlign's rule) give outside_value. Differentiable w.r.t. the maps.
 */
template <typename Dtype>
class AdjustBackLayer : public Layer<Dtype> {
 public:
  explicit AdjustBackLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "AdjustBack"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
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

  Dtype outside_value_;
};

}  // namespace caffe

#endif  // CAFFE_ADJUST_BACK_LAYER_HPP_
