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

// Keeps `keep` of the anchors in `candidates`, drawn uniformly without replacement (a partial
// Fisher-Yates shuffle of `keep` steps), and sets the labels of the others to -1.
void KeepRandom(std::vector<int>* candidates, int keep, rng_t* gen, std::vector<double>* labels) {
  const int n = static_cast<int>(candidates->size());
  for (int k = 0; k < keep; ++k) {
    boost::uniform_int<int> pick(k, n - 1);
    std::swap((*candidates)[k], (*candidates)[pick(*gen)]);
  }
  for (int k = keep; k < n; ++k) (*labels)[(*candidates)[k]] = -1;
}

// The anchors inside an image (allowed_border), as columns: their index j in the (y, x, a)
// order and their coordinates and areas (BoxArea), so that the IoU loop reads them in sequence.
struct InsideAnchors {
  std::vector<int> index;
  std::vector<double> x1, y1, x2, y2, area;
  void Select(const std::vector<double>& anchors, double im_height, double im_width, double b) {
    index.clear();
    x1.clear(), y1.clear(), x2.clear(), y2.clear(), area.clear();
    const int n = static_cast<int>(anchors.size() / 4);
    for (int j = 0; j < n; ++j) {
      const double* a = &anchors[4 * j];
      if (a[0] >= -b && a[1] >= -b && a[2] <= im_width + b && a[3] <= im_height + b) {
        index.push_back(j);
        x1.push_back(a[0]), y1.push_back(a[1]), x2.push_back(a[2]), y2.push_back(a[3]);
        area.push_back(bbox_util::BoxArea(a));
      }
    }
  }
};

// IoU of every inside anchor with box g into ov[0..ni): bbox_util::BoxIoU's own arithmetic
// (IoUOfExtents, so the same values, bit for bit) over the columns, which the compiler
// vectorises; a box g with a NaN coordinate overlaps nothing.
void OverlapsWith(const InsideAnchors& in, const double* g, double* ov) {
  const int ni = static_cast<int>(in.index.size());
  if (bbox_util::BoxHasNaN(g)) {
    std::fill(ov, ov + ni, 0.0);
    return;
  }
  const double g_area = bbox_util::BoxArea(g);
  const double* x1 = &in.x1[0];
  const double* y1 = &in.y1[0];
  const double* x2 = &in.x2[0];
  const double* y2 = &in.y2[0];
  const double* area = &in.area[0];
  for (int j = 0; j < ni; ++j) {
    ov[j] = bbox_util::IoUOfExtents(bbox_util::OverlapExtent(x1[j], x2[j], g[0], g[2]),
                                    bbox_util::OverlapExtent(y1[j], y2[j], g[1], g[3]),
                                    area[j], g_area);
  }
}

// The targets of one image (targets.anchor_targets), written into the image's tops: gt G x 4
// (double); labels_out A x cells (1 fg, 0 bg, -1 ignore), targets_out, inside_out and
// outside_out 4A x cells, where anchor j = cell * A + a. The tops come in holding -1, 0, 0, 0.
template <typename Dtype>
void ImageTargets(const std::vector<double>& anchors, int num_anchors, int cells,
    const std::vector<double>& gt, double im_height, double im_width,
    const AnchorTargetConfig& cfg, rng_t* gen, InsideAnchors* in, std::vector<double>* ov,
    Dtype* labels_out, Dtype* targets_out, Dtype* inside_out, Dtype* outside_out) {
  const int num_gt = static_cast<int>(gt.size() / 4);
  in->Select(anchors, im_height, im_width, cfg.allowed_border);
  const int ni = static_cast<int>(in->index.size());
  if (ni == 0) return;
  std::vector<double> lab(ni, -1);
  std::vector<int> argmax(ni, 0);
  if (num_gt == 0) {
    std::fill(lab.begin(), lab.end(), 0);
  } else {
    // ov is G x ni (gt-major); max_ov / argmax per anchor and gt_max per gt box follow the
    // reference's argmax and max: the first maximum wins.
    ov->resize(static_cast<size_t>(num_gt) * ni);
    std::vector<double> max_ov(ni, 0), gt_max(num_gt, 0);
    for (int k = 0; k < num_gt; ++k) {
      double* o = &(*ov)[static_cast<size_t>(k) * ni];
      OverlapsWith(*in, &gt[4 * k], o);
      double best = o[0];
      for (int j = 0; j < ni; ++j) {
        if (k == 0 || o[j] > max_ov[j]) {
          max_ov[j] = o[j];
          argmax[j] = k;
        }
        best = o[j] > best ? o[j] : best;
      }
      gt_max[k] = best;
    }
    for (int j = 0; j < ni; ++j) {
      if (max_ov[j] < cfg.negative_overlap) lab[j] = 0;
      if (max_ov[j] >= cfg.positive_overlap) lab[j] = 1;
    }
    for (int k = 0; k < num_gt; ++k) {  // the best anchors of each gt box (ties: all of them)
      if (!(gt_max[k] > 0)) continue;
      const double* o = &(*ov)[static_cast<size_t>(k) * ni];
      for (int j = 0; j < ni; ++j) {
        if (o[j] == gt_max[k]) lab[j] = 1;
      }
    }
  }
  const int num_fg = static_cast<int>(cfg.fg_fraction * cfg.batch_size);
  std::vector<int> fg, bg;
  for (int j = 0; j < ni; ++j) {
    if (lab[j] == 1) fg.push_back(j);
  }
  const int fg_size = static_cast<int>(fg.size());
  if (fg_size > num_fg) KeepRandom(&fg, num_fg, gen, &lab);
  const int num_bg = cfg.batch_size - std::min(fg_size, num_fg);
  for (int j = 0; j < ni; ++j) {
    if (lab[j] == 0) bg.push_back(j);
  }
  const int bg_size = static_cast<int>(bg.size());
  if (bg_size > num_bg) KeepRandom(&bg, num_bg, gen, &lab);
  int sampled = 0;
  for (int j = 0; j < ni; ++j) sampled += lab[j] >= 0;
  const Dtype outside = static_cast<Dtype>(1.0 / std::max(sampled, 1));
  const int A = num_anchors;
  for (int j = 0; j < ni; ++j) {
    const int i = in->index[j];
    const int c = i / A, a = i % A;
    labels_out[a * cells + c] = static_cast<Dtype>(lab[j]);
    if (lab[j] < 0) continue;
    for (int k = 0; k < 4; ++k) outside_out[(4 * a + k) * cells + c] = outside;
    if (lab[j] != 1) continue;  // targets and inside weights: fg anchors only
    double delta[4];
    bbox_util::BoxEncode(&anchors[4 * i], &gt[4 * argmax[j]], delta);
    for (int k = 0; k < 4; ++k) {
      targets_out[(4 * a + k) * cells + c] = static_cast<Dtype>(delta[k]);
      inside_out[(4 * a + k) * cells + c] = Dtype(1);
    }
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
  anchors_height_ = anchors_width_ = -1;
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
  if (height != anchors_height_ || width != anchors_width_) {  // the anchors of the map, once
    anchors_.resize(4 * static_cast<size_t>(height) * width * num_anchors_);
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        for (int a = 0; a < num_anchors_; ++a) {
          bbox_util::ShiftedAnchor(&base_anchors_[0], a, y, x, feat_stride_,
                                   &anchors_[4 * ((y * width + x) * num_anchors_ + a)]);
        }
      }
    }
    anchors_height_ = height;
    anchors_width_ = width;
  }
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
  AnchorTargetConfig cfg;
  cfg.positive_overlap = positive_overlap_;
  cfg.negative_overlap = negative_overlap_;
  cfg.fg_fraction = fg_fraction_;
  cfg.allowed_border = allowed_border_;
  cfg.batch_size = batch_size_;
  const Dtype* info = bottom[3]->cpu_data();
  caffe_set(top[0]->count(), Dtype(-1), top[0]->mutable_cpu_data());
  for (int t = 1; t < 4; ++t) caffe_set(top[t]->count(), Dtype(0), top[t]->mutable_cpu_data());
  std::vector<double> gt, ov;
  InsideAnchors inside;
  for (int i = 0; i < num; ++i) {
    gt.clear();  // persons, then faces (the reference's order: argmax ties)
    GtOfImage(*bottom[1], i, &gt);
    GtOfImage(*bottom[2], i, &gt);
    const size_t maps = static_cast<size_t>(i) * 4 * n;
    ImageTargets(anchors_, A, cells, gt, static_cast<double>(info[3 * i]),
                 static_cast<double>(info[3 * i + 1]), cfg, gen, &inside, &ov,
                 top[0]->mutable_cpu_data() + static_cast<size_t>(i) * n,
                 top[1]->mutable_cpu_data() + maps, top[2]->mutable_cpu_data() + maps,
                 top[3]->mutable_cpu_data() + maps);
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
