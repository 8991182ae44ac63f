#ifndef CAFFE_ADJUSTED_ROI_ALIGN_LAYER_HPP_
#define CAFFE_ADJUSTED_ROI_ALIGN_LAYER_HPP_

#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/// Adjusted rois (R x 5) from person rois (R x 5) and major faces (R x 6, from
/// FaceMajoritySelect); rows without a valid face are copied unchanged.
template <typename Dtype>
void AdjustRoIsCPU(int num_rois, const Dtype* rois, const Dtype* faces, Dtype face_x,
                   Dtype face_y, Dtype* adjusted);
#ifndef CPU_ONLY
template <typename Dtype>
void AdjustRoIsGPU(int num_rois, const Dtype* rois, const Dtype* faces, Dtype face_x,
                   Dtype face_y, Dtype* adjusted);
#endif

/// CHECKs that every valid row of an R x 6 major-faces blob has finite coordinates.
template <typename Dtype>
void CheckMajorFaces(const Blob<Dtype>& faces, const std::string& layer_name);

/**
 * @brief GPSNet's adjusted RoIAlign (paper section 4.1): each person RoI is padded (only
 * ever enlarged) so that the centre of its major face lands at (face_x, face_y) of the
 * adjusted box, which is then RoIAligned exactly as RoIAlign does.
 *
 * Bottoms: features N x C x H x W; person rois R x 5 (b, x1, y1, x2, y2); major faces
 * R x 6 (b, x1, y1, x2, y2, valid). Tops: R x C x pooled_h x pooled_w; adjusted rois R x 5.
 * A RoI without a valid face (valid == 0) is aligned unadjusted. Differentiable w.r.t. the
 * features only.
 */
template <typename Dtype>
class AdjustedRoIAlignLayer : public Layer<Dtype> {
 public:
  explicit AdjustedRoIAlignLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "AdjustedRoIAlign"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return 2; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  RoIAlignConfig config_;
  Dtype face_x_, face_y_;
};

}  // namespace caffe

#endif  // CAFFE_ADJUSTED_ROI_ALIGN_LAYER_HPP_
