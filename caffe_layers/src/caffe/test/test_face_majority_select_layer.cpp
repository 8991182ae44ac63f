#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/face_majority_select_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_roi_layers_util.hpp"

namespace caffe {

using roi_test::SetBlob;
using roi_test::Shape;

template <typename TypeParam>
class FaceMajoritySelectLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  FaceMajoritySelectLayerTest()
      : blob_rois_(new Blob<Dtype>()), blob_faces_(new Blob<Dtype>()),
        blob_scores_(new Blob<Dtype>()), blob_top_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    blob_bottom_vec_.push_back(blob_rois_);
    blob_bottom_vec_.push_back(blob_faces_);
    blob_top_vec_.push_back(blob_top_);
  }
  virtual ~FaceMajoritySelectLayerTest() {
    delete blob_rois_; delete blob_faces_; delete blob_scores_; delete blob_top_;
  }
  void Run(const std::vector<double>& rois, const std::vector<double>& faces,
           float min_overlap = 0) {
    SetBlob(blob_rois_, Shape(rois.size() / 5, 5), rois);
    SetBlob(blob_faces_, Shape(faces.size() / 5, 5), faces);
    LayerParameter p;
    p.mutable_face_majority_select_param()->set_min_overlap(min_overlap);
    Forward(p);
  }
  // With the third bottom: one score per face and the layer's score_threshold.
  void RunScored(const std::vector<double>& rois, const std::vector<double>& faces,
                 const std::vector<double>& scores, float score_threshold) {
    SetBlob(blob_scores_, std::vector<int>(1, static_cast<int>(scores.size())), scores);
    blob_bottom_vec_.push_back(blob_scores_);
    SetBlob(blob_rois_, Shape(rois.size() / 5, 5), rois);
    SetBlob(blob_faces_, Shape(faces.size() / 5, 5), faces);
    LayerParameter p;
    p.mutable_face_majority_select_param()->set_score_threshold(score_threshold);
    Forward(p);
    blob_bottom_vec_.pop_back();
  }
  void Forward(const LayerParameter& p) {
    FaceMajoritySelectLayer<Dtype> layer(p);
    layer.SetUp(blob_bottom_vec_, blob_top_vec_);
    layer.Forward(blob_bottom_vec_, blob_top_vec_);
    roi_test::ExpectCpuGpuParity(&layer, blob_bottom_vec_, blob_top_vec_, false, 0);
  }
  void ExpectRow(int r, const double* expected) {
    for (int k = 0; k < 6; ++k) {
      EXPECT_EQ(blob_top_->cpu_data()[6 * r + k], Dtype(expected[k])) << "row " << r << " col " << k;
    }
  }

  Blob<Dtype>* const blob_rois_;
  Blob<Dtype>* const blob_faces_;
  Blob<Dtype>* const blob_scores_;
  Blob<Dtype>* const blob_top_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(FaceMajoritySelectLayerTest, TestDtypesAndDevices);

// Face 0's centre lies outside the RoI; faces 1 and 2 inside, face 2 larger; face 3 belongs
// to the other image. RoI 1 (image 1) only sees face 3, RoI 2 (image 1) contains no centre.
TYPED_TEST(FaceMajoritySelectLayerTest, TestForwardHand) {
  const double rois[] = {0, 0, 0, 10, 10,
                         1, 0, 0, 10, 10,
                         1, 20, 20, 30, 30};
  const double faces[] = {0, 8, 8, 14, 14,
                          0, 2, 2, 4, 4,
                          0, 5, 5, 9, 9,
                          1, 1, 1, 2, 2};
  this->Run(std::vector<double>(rois, rois + 15), std::vector<double>(faces, faces + 20));
  EXPECT_EQ(this->blob_top_->shape(), Shape(3, 6));
  const double r0[] = {0, 5, 5, 9, 9, 1}, r1[] = {1, 1, 1, 2, 2, 1}, r2[] = {1, 0, 0, 0, 0, 0};
  this->ExpectRow(0, r0);
  this->ExpectRow(1, r1);
  this->ExpectRow(2, r2);
}

// The area that counts is the area inside the RoI: a large face mostly outside loses
// against a smaller one wholly inside.
TYPED_TEST(FaceMajoritySelectLayerTest, TestIntersectionNotArea) {
  const double rois[] = {0, 0, 0, 10, 10};
  const double faces[] = {0, 4, -12, 10, 4,   // centre (7, -4): outside
                          0, 1, -4, 9, 5,     // centre (5, 0.5): area 40, inside 8 x 5 = 40
                          0, -6, 3, 8, 9,     // centre (1, 6): area 84, inside 8 x 6 = 48
                          0, 6, 6, 9, 9};     // area 9
  this->Run(std::vector<double>(rois, rois + 5), std::vector<double>(faces, faces + 20));
  const double r0[] = {0, -6, 3, 8, 9, 1};
  this->ExpectRow(0, r0);
}

// Equal areas inside: the lowest face index wins; a face of another image is never picked.
TYPED_TEST(FaceMajoritySelectLayerTest, TestTiesAndOtherImage) {
  const double rois[] = {0, 0, 0, 10, 10};
  const double faces[] = {1, 0, 0, 10, 10,
                          0, 6, 6, 8, 8,
                          0, 1, 1, 3, 3};
  this->Run(std::vector<double>(rois, rois + 5), std::vector<double>(faces, faces + 15));
  const double r0[] = {0, 6, 6, 8, 8, 1};
  this->ExpectRow(0, r0);
}

TYPED_TEST(FaceMajoritySelectLayerTest, TestNoFaces) {
  const double rois[] = {0, 0, 0, 10, 10, 1, 2, 2, 5, 5};
  this->Run(std::vector<double>(rois, rois + 10), std::vector<double>());
  EXPECT_EQ(this->blob_top_->shape(), Shape(2, 6));
  const double r0[] = {0, 0, 0, 0, 0, 0}, r1[] = {1, 0, 0, 0, 0, 0};
  this->ExpectRow(0, r0);
  this->ExpectRow(1, r1);
}

TYPED_TEST(FaceMajoritySelectLayerTest, TestZeroRoIs) {
  const double faces[] = {0, 1, 1, 2, 2};
  this->Run(std::vector<double>(), std::vector<double>(faces, faces + 5));
  EXPECT_EQ(this->blob_top_->shape(), Shape(0, 6));
}

// min_overlap: a face with less than that fraction of its area inside the RoI is ignored.
TYPED_TEST(FaceMajoritySelectLayerTest, TestMinOverlap) {
  const double rois[] = {0, 0, 0, 10, 10};
  const double faces[] = {0, 7, 0, 12, 4};  // centre (9.5, 2), inside 3 x 4 of 5 x 4: 0.6
  const std::vector<double> r(rois, rois + 5), f(faces, faces + 5);
  this->Run(r, f, 0.5);
  const double picked[] = {0, 7, 0, 12, 4, 1}, none[] = {0, 0, 0, 0, 0, 0};
  this->ExpectRow(0, picked);
  this->Run(r, f, 0.7);
  this->ExpectRow(0, none);
}

// score_threshold: a large low-score face (index 0) loses against a small high-score one
// (index 1); among high-score faces the area inside still decides (index 2 over 1 at 0.5);
// the threshold itself counts as high.
TYPED_TEST(FaceMajoritySelectLayerTest, TestLowScoreNeverBeatsHighScore) {
  const double rois[] = {0, 0, 0, 10, 10};
  const double faces[] = {0, 1, 5, 9, 10,    // area inside 8 x 5 = 40
                          0, 4, 1, 6, 3,     // 2 x 2 = 4
                          0, 3, 1, 6, 4};    // 3 x 3 = 9
  const std::vector<double> r(rois, rois + 5), f(faces, faces + 15);
  const double large[] = {0, 1, 5, 9, 10, 1}, small[] = {0, 4, 1, 6, 3, 1},
               middle[] = {0, 3, 1, 6, 4, 1};
  const double s1[] = {0.1, 0.9, 0.3};
  this->RunScored(r, f, std::vector<double>(s1, s1 + 3), 0.5);
  this->ExpectRow(0, small);
  const double s2[] = {0.1, 0.9, 0.5};
  this->RunScored(r, f, std::vector<double>(s2, s2 + 3), 0.5);
  this->ExpectRow(0, middle);
  // threshold 0 (the default), or every face high: the largest area inside, as without scores
  this->RunScored(r, f, std::vector<double>(s1, s1 + 3), 0);
  this->ExpectRow(0, large);
  const double s3[] = {0.95, 0.9, 0.99};
  this->RunScored(r, f, std::vector<double>(s3, s3 + 3), 0.5);
  this->ExpectRow(0, large);
  this->Run(r, f);
  this->ExpectRow(0, large);
}

// Only low-score faces in the RoI: the largest of them is still the major face; a high-score
// face of another RoI does not count.
TYPED_TEST(FaceMajoritySelectLayerTest, TestLowScoreFacesWhenNoHighScoreFace) {
  const double rois[] = {0, 0, 0, 10, 10,
                         0, 20, 20, 30, 30};
  const double faces[] = {0, 1, 1, 3, 3,
                          0, 2, 2, 7, 7,
                          0, 21, 21, 23, 23};
  const double scores[] = {0.2, 0.3, 0.9};
  this->RunScored(std::vector<double>(rois, rois + 10), std::vector<double>(faces, faces + 15),
                  std::vector<double>(scores, scores + 3), 0.5);
  const double r0[] = {0, 2, 2, 7, 7, 1}, r1[] = {0, 21, 21, 23, 23, 1};
  this->ExpectRow(0, r0);
  this->ExpectRow(1, r1);
}

TYPED_TEST(FaceMajoritySelectLayerTest, TestScoredWithoutFaces) {
  const double rois[] = {0, 0, 0, 10, 10};
  this->RunScored(std::vector<double>(rois, rois + 5), std::vector<double>(),
                  std::vector<double>(), 0.5);
  const double none[] = {0, 0, 0, 0, 0, 0};
  this->ExpectRow(0, none);
}

class FaceMajoritySelectLayerDeathTest : public roi_test::DeathTest {};

TEST_F(FaceMajoritySelectLayerDeathTest, TestBadShapes) {
  Caffe::set_mode(Caffe::CPU);
  Blob<float> rois(Shape(2, 4)), faces(Shape(1, 5)), top;
  vector<Blob<float>*> bottom, tops;
  bottom.push_back(&rois); bottom.push_back(&faces);
  tops.push_back(&top);
  LayerParameter p;
  p.set_name("fms");
  FaceMajoritySelectLayer<float> layer(p);
  EXPECT_DEATH(layer.SetUp(bottom, tops), "layer fms: person rois must be R x 5");
  rois.Reshape(Shape(2, 5));
  faces.Reshape(Shape(1, 6));
  FaceMajoritySelectLayer<float> layer2(p);
  EXPECT_DEATH(layer2.SetUp(bottom, tops), "face boxes must be R x 5");
  faces.Reshape(Shape(1, 5));
  p.mutable_face_majority_select_param()->set_min_overlap(1.5);
  FaceMajoritySelectLayer<float> layer3(p);
  EXPECT_DEATH(layer3.SetUp(bottom, tops), "min_overlap must lie in \\[0, 1\\]");
  p.mutable_face_majority_select_param()->set_min_overlap(0);
  p.mutable_face_majority_select_param()->set_score_threshold(-0.5);
  FaceMajoritySelectLayer<float> layer4(p);
  EXPECT_DEATH(layer4.SetUp(bottom, tops), "score_threshold must lie in \\[0, 1\\]");
  p.mutable_face_majority_select_param()->set_score_threshold(0.5);
  Blob<float> scores(std::vector<int>(1, 2));
  bottom.push_back(&scores);
  FaceMajoritySelectLayer<float> layer5(p);
  EXPECT_DEATH(layer5.SetUp(bottom, tops), "face scores must hold one value per face box \\(1\\)");
}

}  // namespace caffe
