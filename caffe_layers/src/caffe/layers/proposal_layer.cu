#include <vector>

#include "caffe/layers/proposal_layer.hpp"

namespace caffe {

// Decoding, clipping, the min-size test and the top-N sort run on the CPU (the bottoms are
// read from the host); the NMS's IoU mask is computed on the GPU (NmsSortedGpu).
template <typename Dtype>
void ProposalLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  ForwardOn(bottom, top, true);
}

INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer);

}  // namespace caffe
