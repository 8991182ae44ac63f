#include <cmath>
#include <vector>

#include "caffe/layers/smooth_l1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const float sigma = this->layer_param_.smooth_l1_loss_param().sigma();
  CHECK(sigma > 0 && std::isfinite(sigma)) << "layer " << this->layer_param_.name()
      << ": smooth_l1_loss_param.sigma must be finite and > 0, got " << sigma;
  sigma2_ = Dtype(sigma) * Dtype(sigma);
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  static const char* const kNames[4] = {"predictions", "targets", "inside weights",
                                        "outside weights"};
  for (size_t i = 1; i < bottom.size(); ++i) {
    CHECK(bottom[i]->shape() == bottom[0]->shape()) << "layer " << this->layer_param_.name()
        << ": bottom shapes differ: " << kNames[i] << " " << bottom[i]->shape_string()
        << " vs predictions " << bottom[0]->shape_string();
  }
  LossLayer<Dtype>::Reshape(bottom, top);
  values_.ReshapeLike(*bottom[0]);
  grads_.ReshapeLike(*bottom[0]);
  if (ones_.count() != bottom[0]->count()) {
    ones_.ReshapeLike(*bottom[0]);
    if (ones_.count() > 0) caffe_set(ones_.count(), Dtype(1), ones_.mutable_cpu_data());
  }
}

template <typename Dtype>
int SmoothL1LossLayer<Dtype>::Normalizer(const vector<Blob<Dtype>*>& bottom) const {
  const int n = bottom[0]->num_axes() > 0 ? bottom[0]->shape(0) : 1;
  return n > 1 ? n : 1;
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::CheckPropagateDown(const vector<bool>& propagate_down) const {
  for (size_t i = 2; i < propagate_down.size(); ++i) {
    CHECK(!propagate_down[i]) << "layer " << this->layer_param_.name()
        << ": cannot backpropagate to the " << (i == 2 ? "inside" : "outside") << " weights";
  }
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  double loss = 0;  // (a float sum of 1e5 terms would lose digits)
  if (count > 0) {
    const Dtype* pred = bottom[0]->cpu_data();
    const Dtype* target = bottom[1]->cpu_data();
    const Dtype* inside = bottom[2]->cpu_data();
    const Dtype* outside = bottom.size() == 4 ? bottom[3]->cpu_data() : NULL;
    Dtype* values = values_.mutable_cpu_data();
    Dtype* grads = grads_.mutable_cpu_data();
    for (int i = 0; i < count; ++i) {
      smooth_l1_util::SmoothL1(pred[i] - target[i], inside[i], outside ? outside[i] : Dtype(1),
                               sigma2_, values + i, grads + i);
      loss += values[i];
    }
  }
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(loss / Normalizer(bottom));
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  const int count = bottom[0]->count();
  if (count == 0) return;
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    const Dtype alpha = (i == 0 ? 1 : -1) * top[0]->cpu_diff()[0] / Normalizer(bottom);
    caffe_cpu_scale(count, alpha, grads_.cpu_data(), bottom[i]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(SmoothL1LossLayer);
#endif

INSTANTIATE_CLASS(SmoothL1LossLayer);
REGISTER_LAYER_CLASS(SmoothL1Loss);

}  // namespace caffe
