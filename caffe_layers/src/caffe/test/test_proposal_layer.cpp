#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/proposal_layer.hpp"
#include "caffe/util/bbox_util.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

// One anchor (4 x 4, stride 4) per cell of a 2 x 2 map on an 8 x 12 (h x w) image: the
// anchors are centred on (0, 0), (4, 0), (0, 4), (4, 4); zero deltas leave them as they are,
// clipped to [-0.5, 11.5] x [-0.5, 7.5]; neighbours only touch (IoU 0).
template <typename TypeParam>
class ProposalLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ProposalLayerTest()
      : prob_(new Blob<Dtype>()), deltas_(new Blob<Dtype>()), info_(new Blob<Dtype>()),
        rois_(new Blob<Dtype>()), scores_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    bottom_.push_back(prob_);
    bottom_.push_back(deltas_);
    bottom_.push_back(info_);
    top_.push_back(rois_);
    top_.push_back(scores_);
    ProposalParameter* p = param_.mutable_proposal_param();
    p->set_feat_stride(4);
    p->add_anchor_sizes(4);
    p->add_anchor_ratios(1);
    p->set_min_size(2);
    // object scores of cells (0,0), (0,1), (1,0), (1,1); channel 0 (background) unused
    const double prob[] = {0, 0, 0, 0,  0.2, 0.9, 0.5, 0.7};
    SetBlob(prob_, Shape(1, 2, 2, 2), std::vector<double>(prob, prob + 8));
    SetBlob(deltas_, Shape(1, 4, 2, 2), std::vector<double>(16, 0));
    const double info[] = {8, 12, 1};
    SetBlob(info_, Shape(1, 3), std::vector<double>(info, info + 3));
  }
  virtual ~ProposalLayerTest() {
    delete prob_; delete deltas_; delete info_; delete rois_; delete scores_;
  }
  void Forward() {
    ProposalLayer<Dtype> layer(param_);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
    roi_test::ExpectCpuGpuParity(&layer, bottom_, top_, false, 0);
  }
  // Delta c (0 dx, 1 dy, 2 dw, 3 dh) of the anchor at cell (y, x) of image 0.
  void SetDelta(int y, int x, int c, double v) {
    deltas_->mutable_cpu_data()[deltas_->offset(0, c, y, x)] = static_cast<Dtype>(v);
  }
  void ExpectRois(const std::vector<double>& rois, const std::vector<double>& scores) {
    ASSERT_EQ(rois_->shape(), Shape(static_cast<int>(scores.size()), 5));
    ASSERT_EQ(scores_->count(), static_cast<int>(scores.size()));
    for (size_t i = 0; i < rois.size(); ++i) {
      EXPECT_NEAR(rois_->cpu_data()[i], rois[i], 1e-5) << "roi element " << i;
    }
    for (size_t i = 0; i < scores.size(); ++i) {
      EXPECT_NEAR(scores_->cpu_data()[i], scores[i], 1e-6) << "score " << i;
    }
  }

  Blob<Dtype>* const prob_;
  Blob<Dtype>* const deltas_;
  Blob<Dtype>* const info_;
  Blob<Dtype>* const rois_;
  Blob<Dtype>* const scores_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
  LayerParameter param_;
};

TYPED_TEST_CASE(ProposalLayerTest, TestDtypesAndDevices);

TYPED_TEST(ProposalLayerTest, TestForwardHand) {
  this->Forward();
  const double rois[] = {0, 2, -0.5, 6, 2,       // (0, 1): 0.9
                         0, 2, 2, 6, 6,          // (1, 1): 0.7
                         0, -0.5, 2, 2, 6,       // (1, 0): 0.5
                         0, -0.5, -0.5, 2, 2};   // (0, 0): 0.2
  const double scores[] = {0.9, 0.7, 0.5, 0.2};
  this->ExpectRois(std::vector<double>(rois, rois + 20), std::vector<double>(scores, scores + 4));
}

TYPED_TEST(ProposalLayerTest, TestTopN) {
  this->param_.mutable_proposal_param()->set_pre_nms_top_n(3);
  this->param_.mutable_proposal_param()->set_post_nms_top_n(2);
  this->Forward();
  const double rois[] = {0, 2, -0.5, 6, 2, 0, 2, 2, 6, 6};
  const double scores[] = {0.9, 0.7};
  this->ExpectRois(std::vector<double>(rois, rois + 10), std::vector<double>(scores, scores + 2));
}

// Cell (0, 0) shifted by one anchor width and height lands on cell (1, 1)'s box, which scores
// higher: the NMS drops it. The anchors of cell (0, 1) and (1, 0) are scaled and moved.
TYPED_TEST(ProposalLayerTest, TestDecodeAndNms) {
  this->SetDelta(0, 0, 0, 1);
  this->SetDelta(0, 0, 1, 1);
  this->SetDelta(0, 1, 2, std::log(2.0));   // (0, 1): 8 wide around x = 4: [0, 8]
  this->SetDelta(1, 0, 1, -0.25);           // (1, 0): centre y 4 -> 3: [1, 5]
  this->Forward();
  const double rois[] = {0, 0, -0.5, 8, 2,
                         0, 2, 2, 6, 6,
                         0, -0.5, 1, 2, 5};
  const double scores[] = {0.9, 0.7, 0.5};
  this->ExpectRois(std::vector<double>(rois, rois + 15), std::vector<double>(scores, scores + 3));
}

// NaN deltas make NaN boxes, which the min-size test drops (as the NumPy reference); infinite
// ones collapse to a side of the image (dx) or are clipped at log(1000 / 16) (dw).
TYPED_TEST(ProposalLayerTest, TestNonFiniteDeltas) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  this->SetDelta(0, 1, 2, nan);   // dropped
  this->SetDelta(1, 1, 0, inf);   // x1 = x2 = 11.5: dropped
  this->SetDelta(1, 0, 3, inf);   // height 4 * 1000 / 16, clipped to [-0.5, 7.5]
  this->Forward();
  const double rois[] = {0, -0.5, -0.5, 2, 7.5, 0, -0.5, -0.5, 2, 2};
  const double scores[] = {0.5, 0.2};
  this->ExpectRois(std::vector<double>(rois, rois + 10), std::vector<double>(scores, scores + 2));
}

// Every box below min_size: the whole image (0, 0, width, height) with score 0.
TYPED_TEST(ProposalLayerTest, TestNothingLeft) {
  this->param_.mutable_proposal_param()->set_min_size(5);
  this->Forward();
  const double rois[] = {0, 0, 0, 12, 8};
  this->ExpectRois(std::vector<double>(rois, rois + 5), std::vector<double>(1, 0));
}

// Two images: their own scores and NMS, the batch index in column 0; a single top works.
TYPED_TEST(ProposalLayerTest, TestBatchAndOneTop) {
  typedef typename TypeParam::Dtype Dtype;
  this->param_.mutable_proposal_param()->set_min_size(3);   // only cell (1, 1) of image 0
  const double prob[] = {0, 0, 0, 0,  0.2, 0.9, 0.5, 0.7,
                         0, 0, 0, 0,  0.8, 0.1, 0.3, 0.4};
  SetBlob(this->prob_, Shape(2, 2, 2, 2), std::vector<double>(prob, prob + 16));
  std::vector<double> deltas(32, 0);
  deltas[16 + 8] = deltas[16 + 12] = std::log(2.0);   // image 1, dw, dh of cell (0, 0): 8 x 8
  SetBlob(this->deltas_, Shape(2, 4, 2, 2), deltas);
  const double info[] = {8, 12, 1, 8, 12, 1};
  SetBlob(this->info_, Shape(2, 3), std::vector<double>(info, info + 6));
  this->Forward();
  const double rois[] = {0, 2, 2, 6, 6,  1, -0.5, -0.5, 4, 4,  1, 2, 2, 6, 6};
  const double scores[] = {0.7, 0.8, 0.4};
  this->ExpectRois(std::vector<double>(rois, rois + 15), std::vector<double>(scores, scores + 3));
  this->top_.pop_back();
  ProposalLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->rois_->shape(), Shape(3, 5));
}

// Random scores and deltas with several anchors: every roi inside the image, at least
// min_size, scores decreasing per image, no two rois of an image with IoU above nms_thresh;
// the same on the CPU and the GPU (ExpectCpuGpuParity).
TYPED_TEST(ProposalLayerTest, TestRandomInvariants) {
  typedef typename TypeParam::Dtype Dtype;
  ProposalParameter* p = this->param_.mutable_proposal_param();
  p->clear_anchor_sizes();
  p->clear_anchor_ratios();
  p->add_anchor_sizes(8);
  p->add_anchor_sizes(16);
  p->add_anchor_ratios(2);
  p->set_pre_nms_top_n(200);
  p->set_post_nms_top_n(40);
  p->set_nms_thresh(0.5);
  this->prob_->Reshape(Shape(2, 4, 12, 10));
  this->deltas_->Reshape(Shape(2, 8, 12, 10));
  FillerParameter fp;
  fp.set_min(0);
  fp.set_max(1);
  UniformFiller<Dtype>(fp).Fill(this->prob_);
  fp.set_std(0.3);
  GaussianFiller<Dtype>(fp).Fill(this->deltas_);
  const double info[] = {45, 38, 1, 30, 40, 1};
  SetBlob(this->info_, Shape(2, 3), std::vector<double>(info, info + 6));
  this->Forward();
  const int r = this->rois_->shape(0);
  ASSERT_GT(r, 20);
  const Dtype* rois = this->rois_->cpu_data();
  const Dtype* s = this->scores_->cpu_data();
  for (int i = 0; i < r; ++i) {
    const Dtype* b = rois + 5 * i;
    const int im = static_cast<int>(b[0]);
    ASSERT_TRUE(im == 0 || im == 1);
    EXPECT_GE(b[1], -0.5);
    EXPECT_GE(b[2], -0.5);
    EXPECT_LE(b[3], info[3 * im + 1] - 0.5);
    EXPECT_LE(b[4], info[3 * im] - 0.5);
    EXPECT_GE(b[3] - b[1], 2 - 1e-5);
    EXPECT_GE(b[4] - b[2], 2 - 1e-5);
    for (int j = i + 1; j < r && rois[5 * j] == b[0]; ++j) {
      EXPECT_GE(s[i], s[j]);
      EXPECT_LE(bbox_util::BoxIoU(b + 1, rois + 5 * j + 1), Dtype(0.5) + Dtype(1e-5));
    }
  }
}

class ProposalLayerDeathTest : public roi_test::DeathTest {};

TEST_F(ProposalLayerDeathTest, TestBadShapesAndParams) {
  Blob<float> prob(Shape(1, 6, 2, 2)), deltas(Shape(1, 12, 2, 2)), info(Shape(1, 3));
  Blob<float> rois;
  vector<Blob<float>*> bottom, top(1, &rois);
  bottom.push_back(&prob);
  bottom.push_back(&deltas);
  bottom.push_back(&info);
  LayerParameter p;
  p.mutable_proposal_param()->add_anchor_ratios(1);   // A = 6 sizes x 1 ratio
  ProposalLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, top), "must have 2A = 12 channels");
  prob.Reshape(Shape(1, 12, 2, 2));
  ProposalLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, top), "deltas must be 1 x 24 x 2 x 2");
  LayerParameter bad = p;
  bad.mutable_proposal_param()->set_nms_thresh(1.5);
  ProposalLayer<float> layer3(bad);
  EXPECT_DEATH(layer3.SetUp(bottom, top), "nms_thresh must lie in");
  bad = p;
  bad.mutable_proposal_param()->add_anchor_sizes(-4);
  ProposalLayer<float> layer4(bad);
  EXPECT_DEATH(layer4.SetUp(bottom, top), "anchor_sizes must be finite and > 0");
  deltas.Reshape(Shape(1, 24, 2, 2));
  info.mutable_cpu_data()[0] = -1;
  ProposalLayer<float> layer5(p);
  layer5.SetUp(bottom, top);
  EXPECT_DEATH(layer5.Forward(bottom, top), "im_info of image 0 must hold");
}

}  // namespace caffe
