#include <stdint.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "boost/random/uniform_int.hpp"

#include "caffe/layers/anchor_target_layer.hpp"
#include "caffe/layers/roi_align_layer.hpp"  // CheckRoIsShape
#include "caffe/util/bbox_util.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/rng.hpp"

namespace caffe {

namespace {

// The sampling configuration of one image (AnchorTargetConfig).
struct AnchorTargetConfig {
  double positive_overlap, negative_overlap, fg_fraction, allowed_border;
  int batch_size;
};

// Sets to -1 the labels of `drop` of the anchors in `candidates`, drawn uniformly without
// replacement (a partial Fisher-Yates shuffle).
void DropRandom(std::vector<int>* candidates, int drop, rng_t* gen, std::vector<double>* labels) {
  const int n = static_cast<int>(candidates->size());
  for (int k = 0; k < drop; ++k) {
    boost::uniform_int<int> pick(k, n - 1);
    std::swap((*candidates)[k], (*candidates)[pick(*gen)]);
    (*labels)[(*candidates)[k]] = -1;
  }
}

// The targets of one image (targets.anchor_targets): anchors N x 4, gt G x 4, all in double.
// Fills labels (N: 1 fg, 0 bg, -1 ignore), targets (N x 4) and inside (N x 4); the outputs
// come in holding -1, 0 and 0.
void ImageTargets(const std::vector<double>& anchors, const std::vector<double>& gt,
    double im_height, double im_width, const AnchorTargetConfig& cfg, rng_t* gen,
    std::vector<double>* labels, std::vector<double>* targets, std::vector<double>* inside) {
  const int n = static_cast<int>(anchors.size() / 4);
  const int num_gt = static_cast<int>(gt.size() / 4);
  const double b = cfg.allowed_border;
  std::vector<int> inds;  // anchors inside the image
  for (int j = 0; j < n; ++j) {
    const double* a = &anchors[4 * j];
    if (a[0] >= -b && a[1] >= -b && a[2] <= im_width + b && a[3] <= im_height + b) {
      inds.push_back(j);
    }
  }
  const int ni = static_cast<int>(inds.size());
  if (ni == 0) return;
  std::vector<double> lab(ni, -1);
  std::vector<int> argmax(ni, 0);
  if (num_gt == 0) {
    std::fill(lab.begin(), lab.end(), 0);
  } else {
    std::vector<double> ov(static_cast<size_t>(ni) * num_gt);
    std::vector<double> gt_max(num_gt, 0);
    std::vector<double> max_ov(ni, 0);
    for (int j = 0; j < ni; ++j) {
      const double* a = &anchors[4 * inds[j]];
      for (int k = 0; k < num_gt; ++k) {
        const double o = bbox_util::BoxIoU(a, &gt[4 * k]);
        ov[static_cast<size_t>(j) * num_gt + k] = o;
        if (k == 0 || o > max_ov[j]) {
          max_ov[j] = o;
          argmax[j] = k;
        }
        if (j == 0 || o > gt_max[k]) gt_max[k] = o;
      }
    }
    for (int j = 0; j < ni; ++j) {
      if (max_ov[j] < cfg.negative_overlap) lab[j] = 0;
    }
    for (int j = 0; j < ni; ++j) {  // the best anchors of each gt box (ties: all of them)
      for (int k = 0; k < num_gt; ++k) {
        if (gt_max[k] > 0 && ov[static_cast<size_t>(j) * num_gt + k] == gt_max[k]) {
          lab[j] = 1;
          break;
        }
      }
      if (max_ov[j] >= cfg.positive_overlap) lab[j] = 1;
    }
  }
  const int num_fg = static_cast<int>(cfg.fg_fraction * cfg.batch_size);
  std::vector<int> fg, bg;
  for (int j = 0; j < ni; ++j) {
    if (lab[j] == 1) fg.push_back(j);
  }
  const int fg_size = static_cast<int>(fg.size());
  if (fg_size > num_fg) DropRandom(&fg, fg_size - num_fg, gen, &lab);
  const int num_bg = cfg.batch_size - std::min(fg_size, num_fg);
  for (int j = 0; j < ni; ++j) {
    if (lab[j] == 0) bg.push_back(j);
  }
  const int bg_size = static_cast<int>(bg.size());
  if (bg_size > num_bg) DropRandom(&bg, bg_size - num_bg, gen, &lab);
  for (int j = 0; j < ni; ++j) {
    const int i = inds[j];
    (*labels)[i] = lab[j];
    if (num_gt == 0) continue;
    bbox_util::BoxEncode(&anchors[4 * i], &gt[4 * argmax[j]], &(*targets)[4 * i]);
    if (lab[j] == 1) std::fill(inside->begin() + 4 * i, inside->begin() + 4 * i + 4, 1.0);
  }
}

// Rows of a G x 5 gt blob with batch index `image`, as G' x 4 boxes appended to `out`.
template <typename Dtype>
void GtOfImage(const Blob<Dtype>& blob, int image, std::vector<double>* out) {
  const int rows = blob.shape(0);
  if (rows == 0) return;
  const Dtype* d = blob.cpu_data();
  for (int r = 0; r < rows; ++r) {
    if (d[5 * r] != Dtype(image)) continue;
    for (int k = 1; k < 5; ++k) out->push_back(static_cast<double>(d[5 * r + k]));
  }
}

}  // namespace

template <typename Dtype>
void AnchorTargetLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const AnchorTargetParameter& p = this->layer_param_.anchor_target_param();
  const std::string& name = this->layer_param_.name();
  CHECK_GT(p.feat_stride(), 0) << "layer " << name << ": feat_stride must be > 0";
  CHECK_LE(p.feat_stride(), static_cast<unsigned int>(INT_MAX)) << "layer " << name
      << ": feat_stride too large";
  feat_stride_ = static_cast<int>(p.feat_stride());
  std::vector<double> sizes(p.anchor_size().begin(), p.anchor_size().end());
  std::vector<double> ratios(p.anchor_ratio().begin(), p.anchor_ratio().end());
  if (sizes.empty()) {
    sizes.assign(bbox_util::kDefaultAnchorSizes,
                 bbox_util::kDefaultAnchorSizes + bbox_util::kNumDefaultAnchorSizes);
  }
  if (ratios.empty()) {
    ratios.assign(bbox_util::kDefaultAnchorRatios,
                  bbox_util::kDefaultAnchorRatios + bbox_util::kNumDefaultAnchorRatios);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    CHECK(sizes[i] > 0 && std::isfinite(sizes[i])) << "layer " << name
        << ": anchor_size must be finite and > 0, got " << sizes[i];
  }
  for (size_t i = 0; i < ratios.size(); ++i) {
    CHECK(ratios[i] > 0 && std::isfinite(ratios[i])) << "layer " << name
        << ": anchor_ratio must be finite and > 0, got " << ratios[i];
  }
  bbox_util::BaseAnchors(sizes, ratios, &base_anchors_);
  num_anchors_ = static_cast<int>(base_anchors_.size() / 4);
  positive_overlap_ = p.positive_overlap();
  negative_overlap_ = p.negative_overlap();
  fg_fraction_ = p.fg_fraction();
  allowed_border_ = p.allowed_border();
  CHECK(std::isfinite(positive_overlap_) && std::isfinite(negative_overlap_)) << "layer "
      << name << ": positive_overlap and negative_overlap must be finite";
  CHECK(fg_fraction_ >= 0 && fg_fraction_ <= 1) << "layer " << name
      << ": fg_fraction must lie in [0, 1], got " << fg_fraction_;
  CHECK(std::isfinite(allowed_border_)) << "layer " << name << ": allowed_border must be finite";
  CHECK_LE(p.batch_size(), static_cast<unsigned int>(INT_MAX)) << "layer " << name
      << ": batch_size too large";
  batch_size_ = static_cast<int>(p.batch_size());
  seed_ = p.has_seed() ? p.seed() : caffe_rng_rand();
  forward_count_ = 0;
}

template <typename Dtype>
void AnchorTargetLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "layer " << name
      << ": rpn_cls_score must be B x 2A x H x W, got " << bottom[0]->shape_string();
  CHECK_EQ(bottom[0]->shape(1), 2 * num_anchors_) << "layer " << name << ": rpn_cls_score has "
      << bottom[0]->shape(1) << " channels, expected 2 x " << num_anchors_ << " anchors";
  CheckRoIsShape(*bottom[1], 5, name, "gt_persons");
  CheckRoIsShape(*bottom[2], 5, name, "gt_faces");
  const int num = bottom[0]->shape(0), height = bottom[0]->shape(2), width = bottom[0]->shape(3);
  CHECK_EQ(bottom[3]->count(), 3 * num) << "layer " << name
      << ": im_info must be B x 3 (height, width, scale) for B = " << num << " images, got "
      << bottom[3]->shape_string();
  if (bottom.size() == 5) {
    CHECK_EQ(bottom[4]->count(), 1) << "layer " << name
        << ": the fifth bottom is the pass index (one value), got " << bottom[4]->shape_string();
  }
  vector<int> shape(4);
  shape[0] = num;
  shape[1] = 1;
  shape[2] = num_anchors_ * height;
  shape[3] = width;
  top[0]->Reshape(shape);
  shape[1] = 4 * num_anchors_;
  shape[2] = height;
  for (int i = 1; i < 4; ++i) top[i]->Reshape(shape);
}

template <typename Dtype>
unsigned int AnchorTargetLayer<Dtype>::PassSeed(unsigned int pass) const {
  // splitmix64's finaliser of (seed, pass): distinct passes get unrelated streams.
  uint64_t z = ((static_cast<uint64_t>(seed_) << 32) | pass) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<unsigned int>(z ^ (z >> 32));
}

template <typename Dtype>
void AnchorTargetLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->shape(0), height = bottom[0]->shape(2), width = bottom[0]->shape(3);
  const int A = num_anchors_;
  const int cells = height * width;
  const int n = cells * A;
  unsigned int pass = forward_count_++;
  if (bottom.size() == 5) {
    const double index = bottom[4]->cpu_data()[0];
    CHECK(index >= 0 && index <= UINT_MAX && index == std::floor(index)) << "layer "
        << this->layer_param_.name() << ": the pass index must be a whole number >= 0, got " << index;
    pass = static_cast<unsigned int>(index);
  }
  Caffe::RNG rng(PassSeed(pass));
  if (num == 0 || n == 0) return;
  rng_t* gen = static_cast<rng_t*>(rng.generator());
  std::vector<double> anchors(4 * static_cast<size_t>(n));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int a = 0; a < A; ++a) {
        bbox_util::ShiftedAnchor(&base_anchors_[0], a, y, x, feat_stride_,
                                 &anchors[4 * ((y * width + x) * A + a)]);
      }
    }
  }
  AnchorTargetConfig cfg;
  cfg.positive_overlap = positive_overlap_;
  cfg.negative_overlap = negative_overlap_;
  cfg.fg_fraction = fg_fraction_;
  cfg.allowed_border = allowed_border_;
  cfg.batch_size = batch_size_;
  const Dtype* info = bottom[3]->cpu_data();
  Dtype* top_labels = top[0]->mutable_cpu_data();
  Dtype* top_maps[3] = {top[1]->mutable_cpu_data(), top[2]->mutable_cpu_data(),
                        top[3]->mutable_cpu_data()};
  std::vector<double> labels, targets, inside, gt;
  for (int i = 0; i < num; ++i) {
    gt.clear();  // persons, then faces (the reference's order: argmax ties)
    GtOfImage(*bottom[1], i, &gt);
    GtOfImage(*bottom[2], i, &gt);
    labels.assign(n, -1);
    targets.assign(4 * static_cast<size_t>(n), 0);
    inside.assign(4 * static_cast<size_t>(n), 0);
    ImageTargets(anchors, gt, static_cast<double>(info[3 * i]),
                 static_cast<double>(info[3 * i + 1]), cfg, gen, &labels, &targets, &inside);
    int sampled = 0;
    for (int j = 0; j < n; ++j) sampled += labels[j] >= 0;
    const double outside = 1.0 / std::max(sampled, 1);
    const std::vector<double>* maps[2] = {&targets, &inside};
    Dtype* lab_out = top_labels + static_cast<size_t>(i) * n;
    for (int c = 0; c < cells; ++c) {  // c = y * width + x; out layout A x H x W, 4A x H x W
      for (int a = 0; a < A; ++a) {
        const int j = c * A + a;
        lab_out[a * cells + c] = static_cast<Dtype>(labels[j]);
        for (int k = 0; k < 4; ++k) {
          const size_t o = (static_cast<size_t>(i) * 4 * A + 4 * a + k) * cells + c;
          for (int m = 0; m < 2; ++m) top_maps[m][o] = static_cast<Dtype>((*maps[m])[4 * j + k]);
          top_maps[2][o] = labels[j] >= 0 ? static_cast<Dtype>(outside) : Dtype(0);
        }
      }
    }
  }
}

template <typename Dtype>
void AnchorTargetLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  for (size_t i = 0; i < propagate_down.size(); ++i) {
    CHECK(!propagate_down[i]) << "layer " << this->layer_param_.name()
        << ": AnchorTarget has no gradient (bottom " << i << "); set propagate_down: false";
  }
}

INSTANTIATE_CLASS(AnchorTargetLayer);
REGISTER_LAYER_CLASS(AnchorTarget);

}  // namespace caffe
