#ifndef CAFFE_FACE_MAJORITY_SELECT_LAYER_HPP_
#define CAFFE_FACE_MAJORITY_SELECT_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief For each person RoI, the major face (paper section 4.1): the face box of the same
 * image whose centre lies inside the RoI and whose area inside the RoI is largest
 * (ties: the lowest face index; faces with area inside < min_overlap * face area ignored).
 * With face scores, a face scoring below score_threshold never beats one at or above it.
 *
 * Bottoms: person rois R x 5 (b, x1, y1, x2, y2); face boxes F x 5 (F may be 0); optionally
 * the face scores (F values; the test nets' detector scores, absent with ground-truth faces).
 * Top: R x 6 (b, x1, y1, x2, y2, valid); without a face: (b, 0, 0, 0, 0, 0).
 * Not differentiable: Backward does nothing.
 */
template <typename Dtype>
class FaceMajoritySelectLayer : public Layer<Dtype> {
 public:
  explicit FaceMajoritySelectLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "FaceMajoritySelect"; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  virtual inline bool AllowForceBackward(const int bottom_index) const { return false; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}

  Dtype min_overlap_;
  Dtype score_threshold_;
};

}  // namespace caffe

#endif  // CAFFE_FACE_MAJORITY_SELECT_LAYER_HPP_
