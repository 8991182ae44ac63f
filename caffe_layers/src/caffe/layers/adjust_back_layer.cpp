#include <string>
#include <vector>

#include "caffe/layers/adjust_back_layer.hpp"
#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

template <typename Dtype>
void AdjustBackLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  outside_value_ = this->layer_param_.adjust_back_param().outside_value();
}

template <typename Dtype>
void AdjustBackLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "layer " << name
      << ": maps must be R x K x P x P, got " << bottom[0]->shape_string();
  const int num_adj = CheckRoIsShape(*bottom[1], 5, name, "adjusted rois");
  const int num_orig = CheckRoIsShape(*bottom[2], 5, name, "original rois");
  CHECK_EQ(num_adj, bottom[0]->shape(0)) << "layer " << name
      << ": adjusted rois must have one row per map, got " << num_adj << " rows for "
      << bottom[0]->shape(0) << " maps";
  CHECK_EQ(num_orig, bottom[0]->shape(0)) << "layer " << name
      << ": original rois must have one row per map, got " << num_orig << " rows for "
      << bottom[0]->shape(0) << " maps";
  top[0]->ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void AdjustBackLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->shape(0), channels = bottom[0]->shape(1);
  const int height = bottom[0]->shape(2), width = bottom[0]->shape(3);
  if (num == 0) return;
  const Dtype* maps = bottom[0]->cpu_data();
  const Dtype* adj = bottom[1]->cpu_data();
  const Dtype* orig = bottom[2]->cpu_data();
  Dtype* out = top[0]->mutable_cpu_data();
  for (int n = 0; n < num; ++n) {
    for (int i = 0; i < height; ++i) {
      for (int j = 0; j < width; ++j) {
        Dtype v, u;
        const bool ok = roi_util::adjust_back_position(adj + 5 * n, orig + 5 * n, height,
            width, height, width, i, j, &v, &u);
        for (int k = 0; k < channels; ++k) {
          const int plane = (n * channels + k) * height * width;
          out[plane + i * width + j] = ok ? roi_util::bilinear_sample(maps + plane, height,
              width, v, u, outside_value_) : outside_value_;
        }
      }
    }
  }
}

template <typename Dtype>
void AdjustBackLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  const int num = bottom[0]->shape(0), channels = bottom[0]->shape(1);
  const int height = bottom[0]->shape(2), width = bottom[0]->shape(3);
  if (num == 0) return;
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), diff);
  const Dtype* adj = bottom[1]->cpu_data();
  const Dtype* orig = bottom[2]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  for (int n = 0; n < num; ++n) {
    for (int i = 0; i < height; ++i) {
      for (int j = 0; j < width; ++j) {
        Dtype v, u;
        if (!roi_util::adjust_back_position(adj + 5 * n, orig + 5 * n, height, width,
                                            height, width, i, j, &v, &u)) continue;
        for (int k = 0; k < channels; ++k) {
          const int plane = (n * channels + k) * height * width;
          roi_util::bilinear_scatter(diff + plane, height, width, v, u,
              top_diff[plane + i * width + j], roi_util::HostAdder());
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(AdjustBackLayer);
#endif

INSTANTIATE_CLASS(AdjustBackLayer);
REGISTER_LAYER_CLASS(AdjustBack);

}  // namespace caffe
