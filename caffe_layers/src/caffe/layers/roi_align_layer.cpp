#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "caffe/layers/roi_align_layer.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/roi_align_util.hpp"

namespace caffe {

template <typename Dtype>
int CheckRoIsShape(const Blob<Dtype>& rois, int columns, const std::string& layer_name,
                   const std::string& what) {
  CHECK_GE(rois.num_axes(), 2) << "layer " << layer_name << ": " << what << " must be R x "
      << columns << ", got shape " << rois.shape_string();
  CHECK_EQ(rois.count(1), columns) << "layer " << layer_name << ": " << what << " must be R x "
      << columns << ", got shape " << rois.shape_string();
  return rois.shape(0);
}

template <typename Dtype>
void CheckRoIsBatchIndex(const Blob<Dtype>& rois, int num_images, const std::string& layer_name) {
  const int n = rois.shape(0);
  if (n == 0) return;
  const Dtype* r = rois.cpu_data();
  for (int i = 0; i < n; ++i) {
    const Dtype b = r[5 * i];
    CHECK(b >= 0 && b < num_images && std::floor(b) == b) << "layer " << layer_name
        << ": roi " << i << " has batch index " << b << ", outside [0, " << num_images
        << ") of the features' batch";
    for (int k = 1; k < 5; ++k) {
      CHECK(std::isfinite(static_cast<double>(r[5 * i + k]))) << "layer " << layer_name
          << ": roi " << i << " has a non-finite coordinate " << r[5 * i + k];
    }
  }
}

template int CheckRoIsShape(const Blob<float>&, int, const std::string&, const std::string&);
template int CheckRoIsShape(const Blob<double>&, int, const std::string&, const std::string&);
template void CheckRoIsBatchIndex(const Blob<float>&, int, const std::string&);
template void CheckRoIsBatchIndex(const Blob<double>&, int, const std::string&);

// CPU threads (OpenMP, docs/fork.md "CPU threads"): the forward pass splits the RoIs (each writes
// its own top rows); the backward pass splits the channels, and each thread adds the RoIs of its
// channels in RoI order, the single-threaded order, so that the result is the same bit for bit
// with any number of threads. Both compute the taps of a table of bins once for all the channels
// (roi_util::bin_taps).
template <typename Dtype>
void RoIAlignForwardCPU(const Dtype* bottom, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* top) {
  const int bins = c.pooled_h * c.pooled_w;
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    std::vector<roi_util::SampleTaps<Dtype> > taps;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int n = 0; n < num_rois; ++n) {
      const Dtype* roi = rois + 5 * n;
      const roi_util::RoIGrid<Dtype> g = roi_util::roi_grid<Dtype>(roi + 1,
          Dtype(c.spatial_scale), c.pooled_h, c.pooled_w, c.sampling_ratio, c.aligned);
      const int per_bin = g.grid_h * g.grid_w, table = roi_util::bins_per_table(g);
      const Dtype* image = bottom + static_cast<int>(roi[0]) * channels * height * width;
      for (int first = 0; first < bins; first += table) {
        const int last = std::min(bins, first + table);
        taps.resize(std::max<size_t>(taps.size(), static_cast<size_t>(last - first) * per_bin + 1));
        roi_util::bin_taps(height, width, g, c.pooled_w, first, last, taps.data());
        for (int ch = 0; ch < channels; ++ch) {
          const Dtype* plane = image + ch * height * width;
          Dtype* out = top + (n * channels + ch) * bins;
          for (int b = first; b < last; ++b) {
            out[b] = roi_util::roi_align_bin_taps(plane, width, &taps[(b - first) * per_bin],
                                                  per_bin, g.count);
          }
        }
      }
    }
  }
}

template <typename Dtype>
void RoIAlignBackwardCPU(const Dtype* top_diff, int channels, int height, int width,
    int num_rois, const Dtype* rois, const RoIAlignConfig& c, Dtype* bottom_diff) {
  const int bins = c.pooled_h * c.pooled_w;
  // The (RoI, bin) items in order, cut into tables of at most kTapTable samples (an item with
  // more alone); per table one parallel loop over the channels.
  std::vector<roi_util::RoIGrid<Dtype> > grids(num_rois);
  for (int n = 0; n < num_rois; ++n) {
    grids[n] = roi_util::roi_grid<Dtype>(rois + 5 * n + 1, Dtype(c.spatial_scale), c.pooled_h,
                                         c.pooled_w, c.sampling_ratio, c.aligned);
  }
  std::vector<roi_util::SampleTaps<Dtype> > taps;
  std::vector<int> start;   // the first sample of each item of the table, and the end
  const long items = static_cast<long>(num_rois) * bins;
  for (long first = 0; first < items;) {
    start.assign(1, 0);
    long last = first;
    while (last < items) {
      const roi_util::RoIGrid<Dtype>& g = grids[last / bins];
      const int per_bin = g.grid_h * g.grid_w;
      if (last > first && start.back() + per_bin > roi_util::kTapTable) break;
      start.push_back(start.back() + per_bin);
      ++last;
    }
    taps.resize(std::max<size_t>(taps.size(), static_cast<size_t>(start.back()) + 1));
    for (long q = first; q < last; ++q) {
      const int n = static_cast<int>(q / bins), b = static_cast<int>(q % bins);
      roi_util::bin_taps(height, width, grids[n], c.pooled_w, b, b + 1, &taps[start[q - first]]);
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int ch = 0; ch < channels; ++ch) {
      for (long q = first; q < last; ++q) {
        const int n = static_cast<int>(q / bins), b = static_cast<int>(q % bins);
        const int image = static_cast<int>(rois[5 * n]);
        Dtype* plane = bottom_diff + (image * channels + ch) * height * width;
        const Dtype tdiff = top_diff[(n * channels + ch) * bins + b];
        roi_util::roi_align_bin_taps_backward(plane, width, &taps[start[q - first]],
            start[q - first + 1] - start[q - first], tdiff, grids[n].count, roi_util::HostAdder());
      }
    }
    first = last;
  }
}

template void RoIAlignForwardCPU(const float*, int, int, int, int, const float*,
    const RoIAlignConfig&, float*);
template void RoIAlignForwardCPU(const double*, int, int, int, int, const double*,
    const RoIAlignConfig&, double*);
template void RoIAlignBackwardCPU(const float*, int, int, int, int, const float*,
    const RoIAlignConfig&, float*);
template void RoIAlignBackwardCPU(const double*, int, int, int, int, const double*,
    const RoIAlignConfig&, double*);

template <typename Dtype>
void RoIAlignLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  config_ = MakeRoIAlignConfig(this->layer_param_.roi_align_param(), this->layer_param_.name());
}

template <typename Dtype>
void RoIAlignLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const std::string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "layer " << name
      << ": features must be N x C x H x W, got " << bottom[0]->shape_string();
  const int num_rois = CheckRoIsShape(*bottom[1], 5, name, "rois");
  vector<int> shape(4);
  shape[0] = num_rois;
  shape[1] = bottom[0]->shape(1);
  shape[2] = config_.pooled_h;
  shape[3] = config_.pooled_w;
  top[0]->Reshape(shape);
}

template <typename Dtype>
void RoIAlignLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_rois = bottom[1]->shape(0);
  CheckRoIsBatchIndex(*bottom[1], bottom[0]->shape(0), this->layer_param_.name());
  if (num_rois == 0) return;
  RoIAlignForwardCPU(bottom[0]->cpu_data(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, bottom[1]->cpu_data(), config_, top[0]->mutable_cpu_data());
}

template <typename Dtype>
void RoIAlignLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  const int num_rois = bottom[1]->shape(0);
  if (num_rois == 0) return;
  RoIAlignBackwardCPU(top[0]->cpu_diff(), bottom[0]->shape(1), bottom[0]->shape(2),
      bottom[0]->shape(3), num_rois, bottom[1]->cpu_data(), config_,
      bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(RoIAlignLayer);
#endif

INSTANTIATE_CLASS(RoIAlignLayer);
REGISTER_LAYER_CLASS(RoIAlign);

}  // namespace caffe
