#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/detection_output_layer.hpp"
#include "caffe/util/bbox_util.hpp"
#include "caffe/util/nms.hpp"

namespace caffe {

namespace {

const int kPerson = 1, kFace = 2;  // gpsnet.detection.targets.PERSON, FACE

// Rows (b, x1, y1, x2, y2) and scores into a top pair (scores optional).
template <typename Dtype>
void WriteDetections(const std::vector<double>& rows, const std::vector<double>& scores,
                     Blob<Dtype>* top_rois, Blob<Dtype>* top_scores) {
  const int n = static_cast<int>(scores.size());
  top_rois->Reshape(std::vector<int>{n, 5});
  for (int j = 0; j < 5 * n; ++j) top_rois->mutable_cpu_data()[j] = static_cast<Dtype>(rows[j]);
  if (top_scores == NULL) return;
  top_scores->Reshape(std::vector<int>{n});
  for (int j = 0; j < n; ++j) top_scores->mutable_cpu_data()[j] = static_cast<Dtype>(scores[j]);
}

}  // namespace

template <typename Dtype>
void DetectionOutputLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const DetectionOutputParameter& p = this->layer_param_.detection_output_param();
  const std::string& name = this->layer_param_.name();
  CHECK(std::isfinite(p.score_thresh())) << "layer " << name
      << ": score_thresh must be finite, got " << p.score_thresh();
  CHECK(p.nms_thresh() >= 0 && p.nms_thresh() <= 1) << "layer " << name
      << ": nms_thresh must lie in [0, 1], got " << p.nms_thresh();
  CHECK_GE(p.max_persons(), 0) << "layer " << name << ": max_persons must be >= 0";
  CHECK_GE(p.max_faces(), 0) << "layer " << name << ": max_faces must be >= 0";
  static const double kStds[] = {0.1, 0.1, 0.2, 0.2};  // targets.BBOX_STDS
  CHECK(p.bbox_stds_size() == 0 || p.bbox_stds_size() == 4) << "layer " << name
      << ": bbox_stds must hold 4 values (dx, dy, dw, dh), got " << p.bbox_stds_size();
  for (int c = 0; c < 4; ++c) {
    bbox_stds_[c] = p.bbox_stds_size() ? p.bbox_stds(c) : kStds[c];
    CHECK(std::isfinite(bbox_stds_[c])) << "layer " << name << ": bbox_stds must be finite";
  }
  score_thresh_ = p.score_thresh();
  nms_thresh_ = p.nms_thresh();
  max_persons_ = p.max_persons();
  max_faces_ = p.max_faces();
  top[0]->Reshape(std::vector<int>{1, 5});
  top[1]->Reshape(std::vector<int>{1});
  top[2]->Reshape(std::vector<int>{0, 5});
  if (top.size() > 3) top[3]->Reshape(std::vector<int>{0});
}

template <typename Dtype>
void DetectionOutputLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  // The tops' row counts are known after the NMS: Forward reshapes them.
  const std::string& name = this->layer_param_.name();
  const Blob<Dtype>& rois = *bottom[0];
  CHECK(rois.num_axes() >= 2 && rois.count(1) == 5) << "layer " << name
      << ": rois must be R x 5, got " << rois.shape_string();
  const int r = rois.shape(0);
  const Blob<Dtype>& prob = *bottom[1];
  CHECK(prob.num_axes() >= 2 && prob.shape(0) == r && prob.count(1) >= 3) << "layer " << name
      << ": class probabilities must be " << r << " x C (C >= 3: background, person, face), "
      << "got " << prob.shape_string();
  CHECK(bottom[2]->num_axes() >= 2 && bottom[2]->shape(0) == r
        && bottom[2]->count(1) == 4 * prob.count(1)) << "layer " << name << ": deltas must be "
      << r << " x " << 4 * prob.count(1) << ", got " << bottom[2]->shape_string();
  CHECK_EQ(bottom[3]->count() % 3, 0) << "layer " << name
      << ": im_info must hold (height, width, scale) per image, got "
      << bottom[3]->shape_string();
}

template <typename Dtype>
void DetectionOutputLayer<Dtype>::ForwardOn(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top, bool gpu) {
  const std::string& name = this->layer_param_.name();
  const int num_rois = bottom[0]->shape(0);
  const int classes = bottom[1]->count(1);
  const int num_images = bottom[3]->count() / 3;
  const Dtype* rois = num_rois > 0 ? bottom[0]->cpu_data() : NULL;
  const Dtype* prob = num_rois > 0 ? bottom[1]->cpu_data() : NULL;
  const Dtype* pred = num_rois > 0 ? bottom[2]->cpu_data() : NULL;
  const Dtype* info = num_images > 0 ? bottom[3]->cpu_data() : NULL;
  std::vector<double> rows[2], scores[2];   // persons, faces
  std::vector<double> boxes, cand_scores;
  std::vector<int> image_rows, cand_rows, order, keep;
  for (int b = 0; b < num_images; ++b) {
    const double im_h = info[3 * b], im_w = info[3 * b + 1];
    CHECK(std::isfinite(im_h) && std::isfinite(im_w) && im_h >= 0 && im_w >= 0) << "layer "
        << name << ": im_info of image " << b << " must hold a finite height and width >= 0, "
        << "got " << im_h << " x " << im_w;
    image_rows.clear();
    for (int r = 0; r < num_rois; ++r) {
      if (rois[5 * r] == b) image_rows.push_back(r);
    }
    for (int c = 0; c < 2; ++c) {
      const int cls = c == 0 ? kPerson : kFace;
      const int limit = c == 0 ? max_persons_ : max_faces_;
      // The image's decoded, clipped boxes of class cls (all rows: the fallback needs them).
      boxes.resize(4 * image_rows.size());
      for (size_t k = 0; k < image_rows.size(); ++k) {
        const int r = image_rows[k];
        double roi[4], delta[4];
        for (int j = 0; j < 4; ++j) {
          roi[j] = rois[5 * r + 1 + j];
          delta[j] = static_cast<double>(pred[(r * classes + cls) * 4 + j]) * bbox_stds_[j];
        }
        bbox_util::BoxDecode(roi, delta, &boxes[4 * k]);
        bbox_util::BoxClip(&boxes[4 * k], im_h, im_w, bbox_util::kNetOffset);
      }
      cand_rows.clear();
      cand_scores.clear();
      for (size_t k = 0; k < image_rows.size(); ++k) {
        const double s = prob[image_rows[k] * classes + cls];
        if (s >= score_thresh_) {
          cand_rows.push_back(static_cast<int>(k));
          cand_scores.push_back(s);
        }
      }
      const int m = limit > 0 ? static_cast<int>(cand_rows.size()) : 0;
      NmsOrderByScore(m, m ? &cand_scores[0] : NULL, 0, &order);
      for (int j = 0; j < m; ++j) order[j] = cand_rows[order[j]];   // candidate -> image row
      NmsInOrder(m ? &boxes[0] : NULL, order, nms_thresh_, limit, gpu, &sorted_boxes_,
                 &nms_buffers_, &keep);
      for (size_t j = 0; j < keep.size(); ++j) {
        const int k = order[keep[j]];
        rows[c].push_back(b);
        rows[c].insert(rows[c].end(), &boxes[4 * k], &boxes[4 * k] + 4);
        scores[c].push_back(prob[image_rows[k] * classes + cls]);
      }
      if (!keep.empty() || cls != kPerson) continue;
      if (image_rows.empty()) {  // no RoI: the whole valid image
        const double whole[5] = {static_cast<double>(b), 0, 0, im_w, im_h};
        rows[c].insert(rows[c].end(), whole, whole + 5);
        scores[c].push_back(0);
        continue;
      }
      // np.argmax: the first NaN, else the first maximum.
      size_t best = 0;
      for (size_t k = 0; k < image_rows.size(); ++k) {
        const double s = prob[image_rows[k] * classes + cls];
        const double t = prob[image_rows[best] * classes + cls];
        if (t != t) break;
        if (s != s || s > t) best = k;
      }
      rows[c].push_back(b);
      rows[c].insert(rows[c].end(), &boxes[4 * best], &boxes[4 * best] + 4);
      scores[c].push_back(prob[image_rows[best] * classes + cls]);
    }
  }
  WriteDetections(rows[0], scores[0], top[0], top[1]);
  WriteDetections(rows[1], scores[1], top[2], top.size() > 3 ? top[3] : NULL);
}

template <typename Dtype>
void DetectionOutputLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  ForwardOn(bottom, top, false);
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(DetectionOutputLayer, Forward);
#endif

INSTANTIATE_CLASS(DetectionOutputLayer);
REGISTER_LAYER_CLASS(DetectionOutput);

}  // namespace caffe
