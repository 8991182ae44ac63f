#ifndef CAFFE_ANCHOR_TARGET_LAYER_HPP_
#define CAFFE_ANCHOR_TARGET_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief RPN anchor targets of a batch (py-faster-rcnn's AnchorTargetLayer), the C++ form of the
 * Python layer python/gpsnet/layers/anchor_target.py (numeric core
 * gpsnet.detection.targets.anchor_targets), with the same bottoms, tops and parameters
 * (anchor_target_param).
 *
 * Bottoms: rpn_cls_score (B x 2A x H x W, only its shape is read), gt_persons (G x 5),
 * gt_faces (F x 5, F may be 0), im_info (B x 3: height, width, scale). Gt rows are
 * (batch, x1, y1, x2, y2); persons and faces are both objects (the RPN is class-agnostic).
 * Tops: labels (B x 1 x A*H x W: 1 fg, 0 bg, -1 ignore), bbox targets, inside weights (1 on fg
 * anchors), outside weights (1 / sampled anchors of the image on sampled anchors), all three
 * B x 4A x H x W.
 *
 * An anchor is fg when its IoU with some gt box is >= positive_overlap or it is the best
 * anchor of some gt box; bg when its best IoU is < negative_overlap; only anchors inside the
 * image (allowed_border) are labelled. At most fg_fraction * batch_size fg and batch_size
 * in all are kept per image, the rest drawn at random become -1.
 *
 * Optional fifth bottom: the pass index i (one value: the data layer's `iteration` top). Then
 * the draws of a pass depend only on (seed, i) and the data, so a training resumed from a
 * snapshot (whose data layer is brought to the snapshot's iteration) samples as the
 * uninterrupted run; without it, i counts this layer's forward passes from 0.
 *
 * Random draws: forward pass i draws from a Caffe::RNG seeded from (seed, i); without a
 * seed in the parameters, the seed is drawn from Caffe's RNG (caffe_rng_rand()) at setup, so it
 * follows Caffe::set_random_seed (the solver's random_seed). Two nets built alike after the
 * same set_random_seed sample alike.
 *
 * GPU: Forward_gpu runs the CPU code (a target layer: per-image sampling on the host, small next
 * to the net). No gradient: Backward CHECK-fails if asked for one.
 */
template <typename Dtype>
class AnchorTargetLayer : public Layer<Dtype> {
 public:
  explicit AnchorTargetLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "AnchorTarget"; }
  virtual inline int MinBottomBlobs() const { return 4; }
  virtual inline int MaxBottomBlobs() const { return 5; }
  virtual inline int ExactNumTopBlobs() const { return 4; }
  virtual inline bool AllowForceBackward(const int bottom_index) const { return false; }

  /// The seed that forward pass i samples with (a mix of the layer's seed and i).
  unsigned int PassSeed(unsigned int pass) const;
  /// Forward passes run so far (the i of the next pass without a pass-index bottom).
  unsigned int forward_count() const { return forward_count_; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  /// The CPU implementation (see the class comment).
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
    Forward_cpu(bottom, top);
  }
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
    Backward_cpu(top, propagate_down, bottom);
  }

  int feat_stride_;
  std::vector<double> base_anchors_;  // A x 4
  int num_anchors_;                    // A
  std::vector<double> anchors_;        // H x W x A x 4: the anchors of the last map (Reshape)
  int anchors_height_, anchors_width_;  // that map's size (-1 before the first)
  double positive_overlap_, negative_overlap_, fg_fraction_, allowed_border_;
  int batch_size_;
  unsigned int seed_;
  unsigned int forward_count_;
};

}  // namespace caffe

#endif  // CAFFE_ANCHOR_TARGET_LAYER_HPP_
