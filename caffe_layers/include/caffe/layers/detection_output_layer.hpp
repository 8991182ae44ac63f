#ifndef CAFFE_DETECTION_OUTPUT_LAYER_HPP_
#define CAFFE_DETECTION_OUTPUT_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/nms.hpp"

namespace caffe {

/**
 * @brief The box head's detections (python gpsnet.layers.proposal.DetectionLayer, numeric
 * core gpsnet.detection.targets.detect). Per image b (the rows of im_info) and class (person 1,
 * face 2): the RoIs of image b decoded by the class's deltas times bbox_stds, clipped to the
 * image, those scoring >= score_thresh, NMS (caffe/util/nms.hpp) keeping at most max_persons /
 * max_faces, by decreasing score. At least one person row per image: with none kept, the
 * image's best-scoring person box (first NaN, else first maximum) even under the threshold,
 * or (0, 0, width, height) with score 0 when the image has no RoI. Faces may be none.
 *
 * Bottoms: rois R x 5 (b, x1, y1, x2, y2), class probabilities R x C (C >= 3: background,
 * person, face, ...), deltas R x 4C, im_info B x 3 (height, width, scale). Tops: person rois
 * P x 5, person scores P, face rois F x 5, optionally face scores F. Boxes are computed in
 * double precision, as the NumPy reference. Forward_gpu runs the NMS's IoU mask on the GPU
 * and the rest on the CPU. No Backward.
 */
template <typename Dtype>
class DetectionOutputLayer : public Layer<Dtype> {
 public:
  explicit DetectionOutputLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "DetectionOutput"; }
  virtual inline int ExactNumBottomBlobs() const { return 4; }
  virtual inline int MinTopBlobs() const { return 3; }
  virtual inline int MaxTopBlobs() const { return 4; }
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

  double score_thresh_, nms_thresh_;
  int max_persons_, max_faces_;
  double bbox_stds_[4];
  Blob<double> sorted_boxes_;   // one image's and class's boxes in NMS order
  NmsBuffers nms_buffers_;      // the GPU NMS's work buffers
};

}  // namespace caffe

#endif  // CAFFE_DETECTION_OUTPUT_LAYER_HPP_
