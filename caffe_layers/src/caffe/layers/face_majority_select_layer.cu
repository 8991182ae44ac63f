#include <vector>

#include "caffe/layers/face_majority_select_layer.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

namespace {

// One thread per person RoI.
template <typename Dtype>
__global__ void FaceMajoritySelectKernel(const int num_rois, const Dtype* rois,
    const Dtype* faces, const Dtype* scores, const int num_faces, const Dtype min_overlap,
    const Dtype score_threshold, Dtype* out) {
  CUDA_KERNEL_LOOP(n, num_rois) {
    roi_util::select_major_face(rois + 5 * n, faces, scores, num_faces, min_overlap,
                                score_threshold, out + 6 * n);
  }
}

}  // namespace

template <typename Dtype>
void FaceMajoritySelectLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[0]->shape(0);
  const int num_faces = bottom[1]->shape(0);
  if (num_rois == 0) return;  // no launch with zero blocks
  const Dtype* faces = num_faces > 0 ? bottom[1]->gpu_data() : NULL;
  const Dtype* scores = num_faces > 0 && bottom.size() == 3 ? bottom[2]->gpu_data() : NULL;
  // NOLINT_NEXT_LINE(whitespace/operators)
  FaceMajoritySelectKernel<Dtype><<<CAFFE_GET_BLOCKS(num_rois), CAFFE_CUDA_NUM_THREADS>>>(
      num_rois, bottom[0]->gpu_data(), faces, scores, num_faces, min_overlap_, score_threshold_,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FORWARD(FaceMajoritySelectLayer);

}  // namespace caffe
