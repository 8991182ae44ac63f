#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/proposal_layer.hpp"
#include "caffe/util/bbox_util.hpp"
#include "caffe/util/nms.hpp"

namespace caffe {

namespace {

// The repeated field's values, or the defaults when it has none; each finite and > 0.
std::vector<double> PositiveValues(const google::protobuf::RepeatedField<float>& field,
    const double* defaults, int num_defaults, const std::string& layer, const char* what) {
  std::vector<double> v(defaults, defaults + num_defaults);
  if (field.size() > 0) v.assign(field.begin(), field.end());
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK(std::isfinite(v[i]) && v[i] > 0) << "layer " << layer << ": " << what
        << " must be finite and > 0, got " << v[i];
  }
  return v;
}

}  // namespace

template <typename Dtype>
void ProposalLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const ProposalParameter& p = this->layer_param_.proposal_param();
  const std::string& name = this->layer_param_.name();
  CHECK_GT(p.feat_stride(), 0) << "layer " << name << ": feat_stride must be > 0";
  CHECK(p.nms_thresh() >= 0 && p.nms_thresh() <= 1) << "layer " << name
      << ": nms_thresh must lie in [0, 1], got " << p.nms_thresh();
  CHECK(std::isfinite(p.min_size()) && p.min_size() >= 0) << "layer " << name
      << ": min_size must be finite and >= 0, got " << p.min_size();
  bbox_util::BaseAnchors(PositiveValues(p.anchor_sizes(), bbox_util::kDefaultAnchorSizes,
                                        bbox_util::kNumDefaultAnchorSizes, name, "anchor_sizes"),
                         PositiveValues(p.anchor_ratios(), bbox_util::kDefaultAnchorRatios,
                                        bbox_util::kNumDefaultAnchorRatios, name, "anchor_ratios"),
                         &base_anchors_);
  num_anchors_ = static_cast<int>(base_anchors_.size() / 4);
  feat_stride_ = p.feat_stride();
  pre_nms_top_n_ = p.pre_nms_top_n();
  post_nms_top_n_ = p.post_nms_top_n();
  nms_thresh_ = p.nms_thresh();
  min_size_ = p.min_size();
  top[0]->Reshape(std::vector<int>{1, 5});
  if (top.size() > 1) top[1]->Reshape(std::vector<int>{1});
}

template <typename Dtype>
void ProposalLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  // The tops' row count is known after the NMS: Forward reshapes them.
  const std::string& name = this->layer_param_.name();
  const Blob<Dtype>& prob = *bottom[0];
  const Blob<Dtype>& deltas = *bottom[1];
  const int a = num_anchors_;
  CHECK_EQ(prob.num_axes(), 4) << "layer " << name << ": object probabilities must be B x 2A x "
      << "H x W (A = " << a << " anchors), got " << prob.shape_string();
  CHECK_EQ(prob.shape(1), 2 * a) << "layer " << name << ": object probabilities must have 2A = "
      << 2 * a << " channels (A = anchor_sizes x anchor_ratios), got " << prob.shape_string();
  CHECK(deltas.num_axes() == 4 && deltas.shape(0) == prob.shape(0)
        && deltas.shape(1) == 4 * a && deltas.shape(2) == prob.shape(2)
        && deltas.shape(3) == prob.shape(3)) << "layer " << name << ": deltas must be "
      << prob.shape(0) << " x " << 4 * a << " x " << prob.shape(2) << " x " << prob.shape(3)
      << ", got " << deltas.shape_string();
  CHECK_EQ(bottom[2]->count(), 3 * prob.shape(0)) << "layer " << name
      << ": im_info must hold (height, width, scale) per image (" << prob.shape(0)
      << " images), got " << bottom[2]->shape_string();
}

template <typename Dtype>
void ProposalLayer<Dtype>::ForwardOn(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top, bool gpu) {
  const std::string& name = this->layer_param_.name();
  const int num = bottom[0]->shape(0), height = bottom[0]->shape(2);
  const int width = bottom[0]->shape(3), a = num_anchors_;
  const int cells = height * width, n = cells * a;
  const Dtype* info = num > 0 ? bottom[2]->cpu_data() : NULL;
  const Dtype* prob = n > 0 ? bottom[0]->cpu_data() : NULL;
  const Dtype* pred = n > 0 ? bottom[1]->cpu_data() : NULL;
  std::vector<double> all_scores, boxes, scores, rows, out_scores;
  std::vector<int> order, keep;
  for (int i = 0; i < num; ++i) {
    const double im_h = info[3 * i], im_w = info[3 * i + 1];
    CHECK(std::isfinite(im_h) && std::isfinite(im_w) && im_h >= 0 && im_w >= 0) << "layer "
        << name << ": im_info of image " << i << " must hold a finite height and width >= 0, "
        << "got " << im_h << " x " << im_w;
    // The reference decodes every anchor, drops the boxes under min_size and keeps the
    // pre_nms_top_n best of the rest. The same boxes, decoding only what is needed: the anchors
    // by score (NmsOrderByScore's order, in which the reference's valid boxes also come), the
    // first K of them decoded until pre_nms_top_n are valid; K grows when too few were.
    const Dtype* fg = prob + (2 * i + 1) * a * cells;   // channels A.. of image i
    const Dtype* d = pred + 4 * i * a * cells;
    all_scores.resize(n);
    for (int cell = 0; cell < cells; ++cell) {
      for (int k = 0; k < a; ++k) all_scores[cell * a + k] = fg[k * cells + cell];
    }
    const int pre = pre_nms_top_n_ > 0 ? pre_nms_top_n_ : n;
    int candidates = static_cast<int>(std::min<int64_t>(n, 2 * static_cast<int64_t>(pre)));
    for (;;) {
      NmsOrderByScore(n, n ? &all_scores[0] : NULL, candidates, &order);
      boxes.clear();
      scores.clear();
      for (size_t c = 0; c < order.size() && static_cast<int>(scores.size()) < pre; ++c) {
        const int j = order[c], cell = j / a, k = j % a;
        double anchor[4], delta[4], box[4];
        bbox_util::ShiftedAnchor(&base_anchors_[0], k, cell / width, cell % width, feat_stride_,
                                 anchor);
        for (int q = 0; q < 4; ++q) delta[q] = d[(4 * k + q) * cells + cell];
        bbox_util::BoxDecode(anchor, delta, box);
        bbox_util::BoxClip(box, im_h, im_w, bbox_util::kNetOffset);
        if (!bbox_util::BoxAtLeast(box, min_size_)) continue;
        boxes.insert(boxes.end(), box, box + 4);
        scores.push_back(all_scores[j]);
      }
      if (static_cast<int>(scores.size()) >= pre || candidates >= n) break;
      candidates = static_cast<int>(std::min<int64_t>(n, 4 * static_cast<int64_t>(candidates)));
    }
    const int valid = static_cast<int>(scores.size());
    order.resize(valid);  // the boxes are in visiting order already
    for (int j = 0; j < valid; ++j) order[j] = j;
    NmsInOrder(valid ? &boxes[0] : NULL, order, nms_thresh_, post_nms_top_n_, gpu,
               &sorted_boxes_, &nms_buffers_, &keep);
    for (size_t j = 0; j < keep.size(); ++j) {
      const int k = order[keep[j]];
      rows.push_back(i);
      rows.insert(rows.end(), &boxes[4 * k], &boxes[4 * k] + 4);
      out_scores.push_back(scores[k]);
    }
    if (keep.empty()) {  // the whole valid image
      const double whole[5] = {static_cast<double>(i), 0, 0, im_w, im_h};
      rows.insert(rows.end(), whole, whole + 5);
      out_scores.push_back(0);
    }
  }
  const int r = static_cast<int>(out_scores.size());
  top[0]->Reshape(std::vector<int>{r, 5});
  if (r > 0) {
    Dtype* t = top[0]->mutable_cpu_data();
    for (int j = 0; j < 5 * r; ++j) t[j] = static_cast<Dtype>(rows[j]);
  }
  if (top.size() > 1) {
    top[1]->Reshape(std::vector<int>{r});
    if (r > 0) {
      Dtype* t = top[1]->mutable_cpu_data();
      for (int j = 0; j < r; ++j) t[j] = static_cast<Dtype>(out_scores[j]);
    }
  }
}

template <typename Dtype>
void ProposalLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  ForwardOn(bottom, top, false);
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(ProposalLayer, Forward);
#endif

INSTANTIATE_CLASS(ProposalLayer);
REGISTER_LAYER_CLASS(Proposal);

}  // namespace caffe
