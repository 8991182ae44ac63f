#include <string>
#include <vector>

#include "caffe/layers/face_majority_select_layer.hpp"
#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const FaceMajoritySelectParameter& param = this->layer_param_.face_majority_select_param();
  const float m = param.min_overlap(), t = param.score_threshold();
  CHECK(m >= 0 && m <= 1) << "layer " << this->layer_param_.name()
      << ": min_overlap must lie in [0, 1], got " << m;
  CHECK(t >= 0 && t <= 1) << "layer " << this->layer_param_.name()
      << ": score_threshold must lie in [0, 1], got " << t;
  min_overlap_ = m;
  score_threshold_ = t;
}

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  const int num_rois = CheckRoIsShape(*bottom[0], 5, name, "person rois");
  const int num_faces = CheckRoIsShape(*bottom[1], 5, name, "face boxes");
  if (bottom.size() == 3) {
    CHECK_EQ(bottom[2]->count(), num_faces) << "layer " << name
        << ": face scores must hold one value per face box (" << num_faces << "), got "
        << bottom[2]->shape_string();
  }
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
  const Dtype* scores = num_faces > 0 && bottom.size() == 3 ? bottom[2]->cpu_data() : NULL;
  Dtype* out = top[0]->mutable_cpu_data();
  for (int n = 0; n < num_rois; ++n) {
    roi_util::select_major_face(rois + 5 * n, faces, scores, num_faces, min_overlap_,
                                score_threshold_, out + 6 * n);
  }
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(FaceMajoritySelectLayer, Forward);
#endif

INSTANTIATE_CLASS(FaceMajoritySelectLayer);
REGISTER_LAYER_CLASS(FaceMajoritySelect);

}  // namespace caffe
