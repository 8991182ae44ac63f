#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/adjusted_roi_align_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

template <typename Dtype>
void AdjustRoIsCPU(int num_rois, const Dtype* rois, const Dtype* faces, Dtype face_x,
                   Dtype face_y, Dtype* adjusted) {
  for (int n = 0; n < num_rois; ++n) {
    roi_util::adjusted_roi5(rois + 5 * n, faces + 6 * n, face_x, face_y, adjusted + 5 * n);
  }
}

template <typename Dtype>
void CheckMajorFaces(const Blob<Dtype>& faces, const std::string& layer_name) {
  const int n = faces.shape(0);
  if (n == 0) return;
  const Dtype* f = faces.cpu_data();
  for (int i = 0; i < n; ++i) {
    if (f[6 * i + 5] == Dtype(0)) continue;
    for (int k = 1; k < 5; ++k) {
      CHECK(std::isfinite(static_cast<double>(f[6 * i + k]))) << "layer " << layer_name
          << ": major face " << i << " is valid but has a non-finite coordinate "
          << f[6 * i + k];
    }
  }
}

template void CheckMajorFaces(const Blob<float>&, const std::string&);
template void CheckMajorFaces(const Blob<double>&, const std::string&);
template void AdjustRoIsCPU(int, const float*, const float*, float, float, float*);
template void AdjustRoIsCPU(int, const double*, const double*, double, double, double*);

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const AdjustedRoIAlignParameter& p = this->layer_param_.adjusted_roi_align_param();
  const std::string& name = this->layer_param_.name();
  config_ = MakeRoIAlignConfig(p, name);
  CHECK(p.face_x() > 0 && p.face_x() < 1) << "layer " << name
      << ": face_x must lie in (0, 1), got " << p.face_x();
  CHECK(p.face_y() > 0 && p.face_y() < 1) << "layer " << name
      << ": face_y must lie in (0, 1), got " << p.face_y();
  face_x_ = p.face_x();
  face_y_ = p.face_y();
}

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "layer " << name
      << ": features must be N x C x H x W, got " << bottom[0]->shape_string();
  const int num_rois = CheckRoIsShape(*bottom[1], 5, name, "rois");
  const int num_faces = CheckRoIsShape(*bottom[2], 6, name, "major faces");
  CHECK_EQ(num_faces, num_rois) << "layer " << name
      << ": major faces must have one row per roi (R x 6 from FaceMajoritySelect), got "
      << num_faces << " rows for " << num_rois << " rois";
  vector<int> shape(4);
  shape[0] = num_rois;
  shape[1] = bottom[0]->shape(1);
  shape[2] = config_.pooled_h;
  shape[3] = config_.pooled_w;
  top[0]->Reshape(shape);
  vector<int> roi_shape(2);
  roi_shape[0] = num_rois;
  roi_shape[1] = 5;
  top[1]->Reshape(roi_shape);
}

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[1]->shape(0);
  CheckRoIsBatchIndex(*bottom[1], bottom[0]->shape(0), this->layer_param_.name());
  CheckMajorFaces(*bottom[2], this->layer_param_.name());
  if (num_rois == 0) return;
  AdjustRoIsCPU(num_rois, bottom[1]->cpu_data(), bottom[2]->cpu_data(), face_x_, face_y_,
                top[1]->mutable_cpu_data());
  RoIAlignForwardCPU(bottom[0]->cpu_data(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, top[1]->cpu_data(), config_, top[0]->mutable_cpu_data());
}

template <typename Dtype>
void AdjustedRoIAlignLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) return;
  // The adjusted rois of the forward pass (top[1]) define the sampling positions.
  RoIAlignBackwardCPU(top[0]->cpu_diff(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, top[1]->cpu_data(), config_,
      bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(AdjustedRoIAlignLayer);
#endif

INSTANTIATE_CLASS(AdjustedRoIAlignLayer);
REGISTER_LAYER_CLASS(AdjustedRoIAlign);

}  // namespace caffe
