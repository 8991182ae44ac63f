#ifndef CAFFE_PROPOSAL_LAYER_HPP_
#define CAFFE_PROPOSAL_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/nms.hpp"

namespace caffe {

/**
 * @brief RPN proposals (python gpsnet.layers.proposal.ProposalLayer, numeric core
 * gpsnet.detection.targets.propose). Per image: the anchors (order y, x, a) decoded by the
 * deltas (bbox_util::BoxDecode), clipped to the image (BoxClip, net offset -0.5), boxes with a
 * side below min_size dropped, the best pre_nms_top_n by object score (ties: anchor order),
 * NMS (caffe/util/nms.hpp) keeping at most post_nms_top_n. An image whose every box is dropped
 * gets the box (0, 0, width, height) with score 0.
 *
 * Bottoms: object probabilities B x 2A x H x W (channels A.. are the object scores), deltas
 * B x 4A x H x W, im_info B x 3 (height, width, scale). Tops: rois R x 5 (b, x1, y1, x2, y2),
 * optionally their scores (R). Boxes are computed in double precision, as the NumPy reference.
 * Forward_gpu runs the NMS's IoU mask on the GPU and the rest on the CPU. No Backward.
 */
template <typename Dtype>
class ProposalLayer : public Layer<Dtype> {
 public:
  explicit ProposalLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Proposal"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }
  virtual inline bool AllowForceBackward(const int bottom_index) const { return false; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}
  // Forward on the CPU; the NMS on the GPU when gpu.
  void ForwardOn(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top, bool gpu);

  std::vector<double> base_anchors_;  // A x 4
  int num_anchors_;
  double feat_stride_;
  int pre_nms_top_n_, post_nms_top_n_;
  double nms_thresh_, min_size_;
  Blob<double> sorted_boxes_;   // one image's boxes in NMS order
  NmsBuffers nms_buffers_;      // the GPU NMS's work buffers
};

}  // namespace caffe

#endif  // CAFFE_PROPOSAL_LAYER_HPP_
