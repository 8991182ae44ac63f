#include <string>
#include <vector>

#include "caffe/layers/face_majority_select_layer.hpp"
#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const float m = this->layer_param_.face_majority_select_param().min_overlap();
  CHECK(m >= 0 && m <= 1) << "layer " << this->layer_param_.name()
      << ": min_overlap must lie in [0, 1], got " << m;
  min_overlap_ = m;
}

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  const int num_rois = CheckRoIsShape(*bottom[0], 5, name, "person rois");
  CheckRoIsShape(*bottom[1], 5, name, "face boxes");
  vector<int> shape(2);
  shape[0] = num_rois;
  shape[1] = 6;
  top[0]->Reshape(shape);
}

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[0]->shape(0);
  const int num_faces = bottom[1]->shape(0);
  if (num_rois == 0) return;
  const Dtype* rois = bottom[0]->cpu_data();
  const Dtype* faces = num_faces > 0 ? bottom[1]->cpu_data() : NULL;
  Dtype* out = top[0]->mutable_cpu_data();
  for (int n = 0; n < num_rois; ++n) {
    roi_util::select_major_face(rois + 5 * n, faces, num_faces, min_overlap_, out + 6 * n);
  }
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(FaceMajoritySelectLayer, Forward);
#endif

INSTANTIATE_CLASS(FaceMajoritySelectLayer);
REGISTER_LAYER_CLASS(FaceMajoritySelect);

}  // namespace caffe
