#include <vector>

#include "caffe/layers/detection_output_layer.hpp"

namespace caffe {

// Decoding, clipping, the score threshold and the sort run on the CPU (the bottoms are read
// from the host); the NMS's IoU mask of each image and class is computed on the GPU.
template <typename Dtype>
void DetectionOutputLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  ForwardOn(bottom, top, true);
}

INSTANTIATE_LAYER_GPU_FORWARD(DetectionOutputLayer);

}  // namespace caffe
