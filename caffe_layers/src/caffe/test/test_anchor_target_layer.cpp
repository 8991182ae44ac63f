#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/anchor_target_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class AnchorTargetLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  AnchorTargetLayerTest() {
    for (int i = 0; i < 4; ++i) {
      bottoms_[i] = new Blob<Dtype>();
      tops_[i] = new Blob<Dtype>();
    }
  }
  virtual void SetUp() {
    for (int i = 0; i < 4; ++i) {
      bottom_.push_back(bottoms_[i]);
      top_.push_back(tops_[i]);
    }
  }
  virtual ~AnchorTargetLayerTest() {
    for (int i = 0; i < 4; ++i) {
      delete bottoms_[i];
      delete tops_[i];
    }
  }
  // One anchor per cell (size 8, ratio 1) on an H x W map of stride 8: the anchor of cell
  // (y, x) is (8x - 4, 8y - 4, 8x + 4, 8y + 4). Images of 8H x 8W pixels.
  LayerParameter Param(int batch_size) const {
    LayerParameter p;
    AnchorTargetParameter* a = p.mutable_anchor_target_param();
    a->add_anchor_size(8);
    a->add_anchor_ratio(1);
    a->set_batch_size(batch_size);
    a->set_seed(7);
    return p;
  }
  void SetInputs(int num, int height, int width, const std::vector<double>& persons,
                 const std::vector<double>& faces) {
    bottoms_[0]->Reshape(Shape(num, 2, height, width));
    SetBlob(bottoms_[1], Shape(persons.size() / 5, 5), persons);
    SetBlob(bottoms_[2], Shape(faces.size() / 5, 5), faces);
    std::vector<double> info;
    for (int i = 0; i < num; ++i) {
      info.push_back(8 * height);
      info.push_back(8 * width);
      info.push_back(1);
    }
    SetBlob(bottoms_[3], Shape(num, 3), info);
  }
  // The anchor box of cell (y, x) as a gt row of image b.
  static void AddCell(int b, int y, int x, std::vector<double>* rows) {
    const double r[5] = {double(b), 8.0 * x - 4, 8.0 * y - 4, 8.0 * x + 4, 8.0 * y + 4};
    rows->insert(rows->end(), r, r + 5);
  }
  std::vector<Dtype> Top(int i) const {
    return std::vector<Dtype>(tops_[i]->cpu_data(), tops_[i]->cpu_data() + tops_[i]->count());
  }
  int Count(int image, Dtype label) const {
    const int n = tops_[0]->count(1);
    int c = 0;
    for (int j = 0; j < n; ++j) c += tops_[0]->cpu_data()[image * n + j] == label;
    return c;
  }
  // Per anchor: inside weights 1 exactly on fg anchors; outside weights 1 / sampled exactly on
  // sampled anchors (one anchor per cell: channel k of cell j is k * cells + j).
  void ExpectWeightsConsistent() const {
    const int num = tops_[0]->shape(0), cells = tops_[0]->count(2);
    for (int b = 0; b < num; ++b) {
      const double outside = 1.0 / std::max(Count(b, 1) + Count(b, 0), 1);
      for (int j = 0; j < cells; ++j) {
        const Dtype label = tops_[0]->cpu_data()[b * cells + j];
        for (int k = 0; k < 4; ++k) {
          const int o = (b * 4 + k) * cells + j;
          EXPECT_EQ(tops_[2]->cpu_data()[o], Dtype(label == 1 ? 1 : 0));
          EXPECT_NEAR(tops_[3]->cpu_data()[o], label >= 0 ? outside : 0, 1e-7);
        }
      }
    }
  }

  Blob<Dtype>* bottoms_[4];
  Blob<Dtype>* tops_[4];
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(AnchorTargetLayerTest, TestDtypesAndDevices);

TYPED_TEST(AnchorTargetLayerTest, TestSetupShapes) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetInputs(2, 3, 5, std::vector<double>(), std::vector<double>());
  this->bottoms_[0]->Reshape(Shape(2, 2 * 18, 3, 5));
  LayerParameter p;  // defaults: 6 sizes x 3 ratios
  AnchorTargetLayer<Dtype> layer(p);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_EQ(this->tops_[0]->shape(), Shape(2, 1, 18 * 3, 5));
  for (int i = 1; i < 4; ++i) EXPECT_EQ(this->tops_[i]->shape(), Shape(2, 72, 3, 5));
}

TYPED_TEST(AnchorTargetLayerTest, TestForwardHand) {
  typedef typename TypeParam::Dtype Dtype;
  // 3 x 3 cells; anchors inside the 24 x 24 image: cells (y, x) in {1, 2}^2. Image 0: a person
  // equal to the anchor of (1, 1); image 1: a face equal to the anchor of (2, 2).
  std::vector<double> persons, faces;
  this->AddCell(0, 1, 1, &persons);
  this->AddCell(1, 2, 2, &faces);
  this->SetInputs(2, 3, 3, persons, faces);
  AnchorTargetLayer<Dtype> layer(this->Param(256));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype labels[18] = {-1, -1, -1, -1, 1, 0, -1, 0, 0,
                            -1, -1, -1, -1, 0, 0, -1, 0, 1};
  for (int j = 0; j < 18; ++j) EXPECT_EQ(this->tops_[0]->cpu_data()[j], labels[j]) << j;
  // Targets only on the fg anchors ((1, 1) of image 0, (2, 2) of image 1), each equal to its gt
  // box: 0 there; every other anchor (bg, ignored, outside) has none: 0 too.
  const Dtype* t = this->tops_[1]->cpu_data();
  for (int j = 0; j < this->tops_[1]->count(); ++j) EXPECT_EQ(t[j], Dtype(0)) << j;
  this->ExpectWeightsConsistent();
  EXPECT_NEAR(this->tops_[3]->cpu_data()[4], 0.25, 1e-7);
  roi_test::ExpectCpuGpuParity(&layer, this->bottom_, this->top_, false, 0);
}

TYPED_TEST(AnchorTargetLayerTest, TestBestAnchorAndThresholds) {
  typedef typename TypeParam::Dtype Dtype;
  // gt (4, 4, 16, 12): IoU 2/3 with the anchor of (1, 1) (its best: fg although < 0.7), 1/4
  // with (1, 2); 0 with the others.
  const std::vector<double> persons{0, 4, 4, 16, 12};
  this->SetInputs(1, 3, 3, persons, std::vector<double>());
  AnchorTargetLayer<Dtype> layer(this->Param(256));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->tops_[0]->cpu_data()[4], Dtype(1));
  EXPECT_EQ(this->tops_[0]->cpu_data()[5], Dtype(0));   // 1/4 < 0.3: bg
  // The fg anchor (4, 4, 12, 12) regresses onto the gt: dx = (10 - 8) / 8, dy 0, dw log(12 / 8),
  // dh 0; the bg anchor (1, 2) has no targets.
  const Dtype* t = this->tops_[1]->cpu_data();
  EXPECT_NEAR(t[0 * 9 + 4], 0.25, 1e-6);
  EXPECT_NEAR(t[1 * 9 + 4], 0, 1e-6);
  EXPECT_NEAR(t[2 * 9 + 4], std::log(1.5), 1e-6);
  EXPECT_NEAR(t[3 * 9 + 4], 0, 1e-6);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(t[k * 9 + 5], Dtype(0));
  LayerParameter p = this->Param(256);
  p.mutable_anchor_target_param()->set_negative_overlap(0.2);
  p.mutable_anchor_target_param()->set_positive_overlap(0.6);
  AnchorTargetLayer<Dtype> layer2(p);
  layer2.SetUp(this->bottom_, this->top_);
  layer2.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->tops_[0]->cpu_data()[4], Dtype(1));
  EXPECT_EQ(this->tops_[0]->cpu_data()[5], Dtype(-1));  // between 0.2 and 0.6: ignored
  EXPECT_EQ(this->tops_[0]->cpu_data()[7], Dtype(0));
  this->ExpectWeightsConsistent();
}

TYPED_TEST(AnchorTargetLayerTest, TestAllowedBorder) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetInputs(1, 3, 3, std::vector<double>(), std::vector<double>());
  LayerParameter p = this->Param(256);
  p.mutable_anchor_target_param()->set_allowed_border(4);
  AnchorTargetLayer<Dtype> layer(p);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  // Cells x, y in {0, 1, 2}: x1 >= -4 always, x2 = 8x + 4 <= 28 for x <= 3: all 9 inside, bg.
  EXPECT_EQ(this->Count(0, 0), 9);
  this->ExpectWeightsConsistent();
}

TYPED_TEST(AnchorTargetLayerTest, TestSampling) {
  typedef typename TypeParam::Dtype Dtype;
  // 8 x 8 cells, 36 anchors inside the 64 x 64 image; 20 of them are gt boxes (fg), 16 bg.
  std::vector<double> persons;
  for (int k = 0; k < 20; ++k) this->AddCell(0, 1 + k / 6, 1 + k % 6, &persons);
  this->SetInputs(1, 8, 8, persons, std::vector<double>());
  AnchorTargetLayer<Dtype> layer(this->Param(16));  // at most 8 fg, 16 in all
  layer.SetUp(this->bottom_, this->top_);
  std::vector<int> picked(64, 0);
  const int passes = 200;
  std::vector<Dtype> first;
  for (int pass = 0; pass < passes; ++pass) {
    layer.Forward(this->bottom_, this->top_);
    EXPECT_EQ(this->Count(0, 1), 8);
    EXPECT_EQ(this->Count(0, 0), 8);
    this->ExpectWeightsConsistent();
    for (int j = 0; j < 64; ++j) picked[j] += this->tops_[0]->cpu_data()[j] == 1;
    if (pass == 0) first = this->Top(0);
    if (pass == 1) {
      EXPECT_NE(first, this->Top(0));  // each pass draws anew
    }
  }
  EXPECT_EQ(layer.forward_count(), static_cast<unsigned int>(passes));
  // Each fg anchor is kept with probability 8 / 20: 80 of 200 (sd 7).
  for (int k = 0; k < 20; ++k) {
    const int j = (1 + k / 6) * 8 + 1 + k % 6;
    EXPECT_GE(picked[j], 50) << k;
    EXPECT_LE(picked[j], 110) << k;
  }
  // The same seed: the same draws.
  AnchorTargetLayer<Dtype> again(this->Param(16));
  again.SetUp(this->bottom_, this->top_);
  again.Forward(this->bottom_, this->top_);
  EXPECT_EQ(first, this->Top(0));
}

TYPED_TEST(AnchorTargetLayerTest, TestNoGtSamplesBackground) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetInputs(1, 8, 8, std::vector<double>(), std::vector<double>());
  AnchorTargetLayer<Dtype> layer(this->Param(16));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->Count(0, 1), 0);
  EXPECT_EQ(this->Count(0, 0), 16);
  EXPECT_EQ(this->Count(0, -1), 64 - 16);
  for (int i = 0; i < this->tops_[1]->count(); ++i) EXPECT_EQ(this->tops_[1]->cpu_data()[i], 0);
  this->ExpectWeightsConsistent();
}

TYPED_TEST(AnchorTargetLayerTest, TestSeedFromCaffeRng) {
  typedef typename TypeParam::Dtype Dtype;
  std::vector<double> persons;
  for (int k = 0; k < 20; ++k) this->AddCell(0, 1 + k / 6, 1 + k % 6, &persons);
  this->SetInputs(1, 8, 8, persons, std::vector<double>());
  LayerParameter p = this->Param(16);
  p.mutable_anchor_target_param()->clear_seed();
  std::vector<Dtype> runs[3];
  for (int r = 0; r < 3; ++r) {
    Caffe::set_random_seed(r < 2 ? 1701 : 1702);
    AnchorTargetLayer<Dtype> layer(p);
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    runs[r] = this->Top(0);
  }
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_NE(runs[0], runs[2]);
}

TYPED_TEST(AnchorTargetLayerTest, TestPassIndexBottom) {
  typedef typename TypeParam::Dtype Dtype;
  // With the fifth bottom, pass i draws as the i-th pass of a layer without it, whatever the
  // passes run before: a net resumed at iteration i (its data layer giving i) samples alike.
  std::vector<double> persons;
  for (int k = 0; k < 20; ++k) this->AddCell(0, 1 + k / 6, 1 + k % 6, &persons);
  this->SetInputs(1, 8, 8, persons, std::vector<double>());
  AnchorTargetLayer<Dtype> counted(this->Param(16));
  counted.SetUp(this->bottom_, this->top_);
  std::vector<std::vector<Dtype> > by_pass;
  for (int pass = 0; pass < 4; ++pass) {
    counted.Forward(this->bottom_, this->top_);
    by_pass.push_back(this->Top(0));
  }
  Blob<Dtype> index(vector<int>(1, 1));
  vector<Blob<Dtype>*> bottom = this->bottom_;
  bottom.push_back(&index);
  AnchorTargetLayer<Dtype> indexed(this->Param(16));
  indexed.SetUp(bottom, this->top_);
  const int order[4] = {3, 1, 1, 0};
  for (int k = 0; k < 4; ++k) {
    index.mutable_cpu_data()[0] = order[k];
    indexed.Forward(bottom, this->top_);
    EXPECT_EQ(by_pass[order[k]], this->Top(0)) << "pass index " << order[k];
  }
}

class AnchorTargetLayerDeathTest : public roi_test::DeathTest {};

TEST_F(AnchorTargetLayerDeathTest, TestBadInputs) {
  Blob<float> score(Shape(1, 4, 3, 3)), persons(Shape(0, 5)), faces(Shape(0, 5)),
      info(Shape(1, 3));
  Blob<float> t0, t1, t2, t3;
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&score); bottom.push_back(&persons);
  bottom.push_back(&faces); bottom.push_back(&info);
  tops.push_back(&t0); tops.push_back(&t1); tops.push_back(&t2); tops.push_back(&t3);
  LayerParameter p;
  p.set_name("at");
  p.mutable_anchor_target_param()->add_anchor_size(8);
  p.mutable_anchor_target_param()->add_anchor_ratio(1);
  AnchorTargetLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, tops),
               "layer at: rpn_cls_score has 4 channels, expected 2 x 1 anchors");
  score.Reshape(Shape(2, 2, 3, 3));
  AnchorTargetLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, tops), "im_info must be B x 3 .* for B = 2 images");
  score.Reshape(Shape(1, 2, 3, 3));
  faces.Reshape(Shape(1, 4));
  AnchorTargetLayer<float> layer3(p);
  EXPECT_DEATH(layer3.SetUp(bottom, tops), "gt_faces must be R x 5");
  faces.Reshape(Shape(0, 5));
  LayerParameter q = p;
  q.mutable_anchor_target_param()->set_fg_fraction(1.5);
  AnchorTargetLayer<float> layer4(q);
  EXPECT_DEATH(layer4.SetUp(bottom, tops), "fg_fraction must lie in \\[0, 1\\], got 1.5");
  q = p;
  q.mutable_anchor_target_param()->set_anchor_ratio(0, -1);
  AnchorTargetLayer<float> layer5(q);
  EXPECT_DEATH(layer5.SetUp(bottom, tops), "anchor_ratio must be finite and > 0, got -1");
  q = p;
  q.mutable_anchor_target_param()->set_feat_stride(0);
  AnchorTargetLayer<float> layer6(q);
  EXPECT_DEATH(layer6.SetUp(bottom, tops), "feat_stride must be > 0");
  AnchorTargetLayer<float> layer7(p);
  layer7.SetUp(bottom, tops);
  std::vector<bool> prop(4, false);
  prop[0] = true;
  EXPECT_DEATH(layer7.Backward(tops, prop, bottom), "AnchorTarget has no gradient \\(bottom 0\\)");
  Blob<float> two(Shape(1, 2));
  bottom.push_back(&two);
  AnchorTargetLayer<float> layer8(p);
  EXPECT_DEATH(layer8.SetUp(bottom, tops), "the fifth bottom is the pass index \\(one value\\)");
}

}  // namespace caffe
