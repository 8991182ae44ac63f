#ifndef CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
#define CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/host_device.hpp"

namespace caffe {

namespace smooth_l1_util {

// One element of the loss: value out * f(in * d) and its derivative out * in * f'(in * d)
// with respect to d = prediction - target; f(x) = 0.5 sigma^2 x^2 for |x| < 1 / sigma^2, else
// |x| - 0.5 / sigma^2 (python/gpsnet/layers/smooth_l1_loss.smooth_l1). Host and device.
template <typename Dtype>
GPSNET_HOST_DEVICE inline void SmoothL1(const Dtype d, const Dtype in, const Dtype out,
                                        const Dtype sigma2, Dtype* value, Dtype* grad) {
  const Dtype x = in * d;
  const Dtype ax = x < Dtype(0) ? -x : x;
  if (ax < Dtype(1) / sigma2) {
    *value = out * (Dtype(0.5) * sigma2 * x * x);
    *grad = out * in * (sigma2 * x);
  } else {
    *value = out * (ax - Dtype(0.5) / sigma2);
    *grad = out * in * Dtype((x > Dtype(0)) - (x < Dtype(0)));
  }
}

}  // namespace smooth_l1_util

/**
 * @brief Smooth L1 loss of box regression (Fast R-CNN), the C++ form of the Python layer
 * python/gpsnet/layers/smooth_l1_loss.py, with the same bottoms, top and values.
 *
 * Bottoms (one shape, first axis N): predictions, targets, inside weights, optional outside
 * weights (1 without). Top: the scalar
 *   loss = sum(out * f(in * (prediction - target))) / max(N, 1),
 * f(x) = 0.5 (sigma x)^2 for |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2 (param
 * smooth_l1_loss_param.sigma, default 1). Zero-count bottoms give 0. As a LossLayer its
 * loss_weight defaults to 1.
 * Gradient: to the predictions and (negated) to the targets; none to the weights (asking for it
 * is an error; AllowForceBackward is false for them).
 */
template <typename Dtype>
class SmoothL1LossLayer : public LossLayer<Dtype> {
 public:
  explicit SmoothL1LossLayer(const LayerParameter& param) : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SmoothL1Loss"; }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 3; }
  virtual inline int MaxBottomBlobs() const { return 4; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index < 2;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// The divisor max(N, 1).
  int Normalizer(const vector<Blob<Dtype>*>& bottom) const;
  /// CHECKs that no gradient is asked of the weights.
  void CheckPropagateDown(const vector<bool>& propagate_down) const;

  Dtype sigma2_;      // sigma^2
  Blob<Dtype> values_;  // per-element loss values
  Blob<Dtype> grads_;   // per-element derivatives with respect to prediction - target
  Blob<Dtype> ones_;    // for the GPU sum
};

}  // namespace caffe

#endif  // CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
