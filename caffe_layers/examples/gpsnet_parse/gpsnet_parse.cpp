// gpsnet_parse: parse one image with a GPSNet test net, in C++ alone (no Python).
//
//   gpsnet_parse NET.prototxt WEIGHTS.caffemodel IMAGE OUT_PREFIX (--config CONFIG.json | --mean B,G,R)
//                [--parts BLOB] [--score-thresh T] [--gpu ID]
//
// NET is a variant's deploy.prototxt, whose layers are all C++ (docs/deploy.md); CONFIG.json the
// config.json beside it (its mean_bgr: NetConfig.mean_bgr), or --mean the mean itself. The image is
// fitted into the net's canvas as `gpsnet infer` does (the longer side fitted, never enlarged,
// top-left, the mean subtracted); one forward pass; each detected person's P x P part
// probabilities (blob `--parts`: parse_prob, or Ins.+Glo.'s mask_prob, whose masks take the
// labels of the global parsing global_prob) are resampled bilinearly to the pixels of its box, arg-maxed and
// resized (nearest) to the image. Writes
//   OUT_PREFIX_person<i>.png   person i's part labels (uint8, 0 outside the person), i from 0
//   OUT_PREFIX_persons.txt     one line per person: i score x1 y1 x2 y2 (image coordinates)
// These are the maps of `gpsnet infer` without --flip/--scales (tests/test_deploy.py checks it).
#include <caffe/caffe.hpp>
#ifdef USE_OPENCV
#include <opencv2/core/core.hpp>
#include <opencv2/imgcodecs/imgcodecs.hpp>
#include <opencv2/imgproc/imgproc.hpp>
#endif  // USE_OPENCV
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifdef USE_OPENCV
using caffe::Blob;
using caffe::Caffe;
using caffe::Net;

namespace {

// Net coordinates are pixel indices: net = image - 0.5 (python/gpsnet/geometry.py).
const double kNetOffset = -0.5;

int Fail(const std::string& msg) {
  std::fprintf(stderr, "gpsnet_parse: %s\n", msg.c_str());
  return 2;
}

// Linear-interpolation taps of coordinate c (0 = centre of cell 0) over n cells, the edge cells
// repeated outside (gpsnet.infer.interpolation_matrix).
void Taps(double c, int n, int* lo, double* frac) {
  c = std::min(std::max(c, 0.0), n - 1.0);
  *lo = std::min(static_cast<int>(std::floor(c)), std::max(n - 2, 0));
  *frac = c - *lo;
}

// K x h x w maps sampled at cell coordinates (ys, xs), arg-max over K (the first maximum):
// a ys.size() x xs.size() label map.
cv::Mat ArgmaxSampled(const float* prob, int k, int h, int w, const std::vector<double>& ys,
                      const std::vector<double>& xs) {
  cv::Mat out(ys.size(), xs.size(), CV_8UC1, cv::Scalar(0));
  std::vector<double> value(k);
  for (size_t y = 0; y < ys.size(); ++y) {
    int ly; double fy;
    Taps(ys[y], h, &ly, &fy);
    for (size_t x = 0; x < xs.size(); ++x) {
      int lx; double fx;
      Taps(xs[x], w, &lx, &fx);
      int best = 0;
      for (int c = 0; c < k; ++c) {
        const float* p = prob + c * h * w;
        double v = (1 - fy) * ((1 - fx) * p[ly * w + lx] + (w > 1 ? fx * p[ly * w + lx + 1] : 0));
        if (h > 1) v += fy * ((1 - fx) * p[(ly + 1) * w + lx] + (w > 1 ? fx * p[(ly + 1) * w + lx + 1] : 0));
        value[c] = static_cast<float>(v);   // gpsnet.infer.sample_grid's float32 maps
        if (value[c] > value[best]) best = c;
      }
      out.at<uchar>(y, x) = static_cast<uchar>(best);
    }
  }
  return out;
}

// Arg-max labels of K x P x P probabilities over a net-coordinate box, pasted into an rh x rw
// map: pixel index i reads bin coordinate (i - lo) / (hi - lo) * P - 0.5 (gpsnet.infer.paste).
cv::Mat Paste(const float* prob, int k, int p, const float* box, int rh, int rw) {
  cv::Mat out(rh, rw, CV_8UC1, cv::Scalar(0));
  const int x0 = std::max(static_cast<int>(std::ceil(box[0])), 0);
  const int y0 = std::max(static_cast<int>(std::ceil(box[1])), 0);
  const int x1 = std::min(static_cast<int>(std::floor(box[2])) + 1, rw);
  const int y1 = std::min(static_cast<int>(std::floor(box[3])) + 1, rh);
  if (x1 <= x0 || y1 <= y0) return out;
  std::vector<double> ys, xs;
  const double bw = std::max(static_cast<double>(box[2]) - box[0], 1e-6);
  const double bh = std::max(static_cast<double>(box[3]) - box[1], 1e-6);
  for (int y = y0; y < y1; ++y) ys.push_back((y - box[1]) / bh * p - 0.5);
  for (int x = x0; x < x1; ++x) xs.push_back((x - box[0]) / bw * p - 0.5);
  ArgmaxSampled(prob, k, p, p, ys, xs).copyTo(out(cv::Rect(x0, y0, x1 - x0, y1 - y0)));
  return out;
}

}  // namespace

// The three numbers of "mean_bgr": [b, g, r] in a config.json (prototxt/<variant>/config.json).
bool MeanFromConfig(const std::string& path, std::string* text) {
  std::ifstream f(path.c_str());
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string json = ss.str();
  const size_t key = json.find("\"mean_bgr\"");
  const size_t open = json.find('[', key == std::string::npos ? json.size() : key);
  const size_t close = json.find(']', open == std::string::npos ? json.size() : open);
  if (key == std::string::npos || open == std::string::npos || close == std::string::npos) return false;
  text->clear();
  for (size_t i = open + 1; i < close; ++i)
    if (!std::isspace(static_cast<unsigned char>(json[i]))) text->push_back(json[i]);
  return true;
}

int main(int argc, char** argv) {
  ::google::InitGoogleLogging(argv[0]);
  FLAGS_minloglevel = 2;  // warnings and errors only
  std::vector<std::string> pos;
  std::string parts_blob, mean_text, config;
  double score_thresh = 0;
  int gpu = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--mean" || a == "--config" || a == "--parts" || a == "--score-thresh" || a == "--gpu") && i + 1 >= argc)
      return Fail(a + " needs a value");
    if (a == "--mean") mean_text = argv[++i];
    else if (a == "--config") config = argv[++i];
    else if (a == "--parts") parts_blob = argv[++i];
    else if (a == "--score-thresh") score_thresh = std::atof(argv[++i]);
    else if (a == "--gpu") gpu = std::atoi(argv[++i]);
    else if (a.rfind("--", 0) == 0) return Fail("unknown option " + a);
    else pos.push_back(a);
  }
  if (pos.size() != 4 || (mean_text.empty() == config.empty()))
    return Fail("usage: gpsnet_parse NET.prototxt WEIGHTS.caffemodel IMAGE OUT_PREFIX "
                "(--config CONFIG.json | --mean B,G,R) [--parts BLOB] [--score-thresh T] [--gpu ID]");
  if (!config.empty() && !MeanFromConfig(config, &mean_text))
    return Fail("cannot read \"mean_bgr\": [b, g, r] from " + config);
  float mean[3];
  {
    std::stringstream ss(mean_text);
    std::string item;
    int n = 0;
    while (std::getline(ss, item, ',')) {
      char* end = NULL;
      const double v = std::strtod(item.c_str(), &end);
      if (n >= 3 || end == item.c_str() || *end != '\0' || !std::isfinite(v))
        return Fail("the mean takes three numbers B,G,R: " + mean_text);
      mean[n++] = static_cast<float>(v);
    }
    if (n != 3) return Fail("the mean takes three numbers B,G,R: " + mean_text);
  }
  if (gpu >= 0) {
    Caffe::SetDevice(gpu);
    Caffe::set_mode(Caffe::GPU);
  } else {
    Caffe::set_mode(Caffe::CPU);
  }
  const cv::Mat image = cv::imread(pos[2], cv::IMREAD_COLOR);
  if (image.empty()) return Fail("cannot read image " + pos[2]);
  { std::ifstream f(pos[0].c_str()); if (!f) return Fail("cannot read net " + pos[0]); }
  { std::ifstream f(pos[1].c_str()); if (!f) return Fail("cannot read weights " + pos[1]); }

  Net<float> net(pos[0], caffe::TEST);
  net.CopyTrainedLayersFrom(pos[1]);
  for (const char* name : {"data", "im_info", "person_rois", "person_scores"})
    if (!net.has_blob(name)) return Fail(std::string("the net has no blob ") + name);
  if (parts_blob.empty()) parts_blob = net.has_blob("parse_prob") ? "parse_prob" : "mask_prob";
  if (!net.has_blob(parts_blob)) return Fail("the net has no blob " + parts_blob + " (--parts)");

  // Fit the image into the canvas (gpsnet.infer.Predictor.preprocess, factor 1).
  Blob<float>* data = net.blob_by_name("data").get();
  const int s = data->width();
  const int h = image.rows, w = image.cols;
  const double scale = std::min(1.0, static_cast<double>(s) / std::max(h, w));
  const int rh = std::max(1, static_cast<int>(std::nearbyint(h * scale)));   // ties to even, as Python's round
  const int rw = std::max(1, static_cast<int>(std::nearbyint(w * scale)));
  cv::Mat resized;
  cv::resize(image, resized, cv::Size(rw, rh), 0, 0, cv::INTER_LINEAR);
  data->Reshape(1, 3, s, s);
  float* d = data->mutable_cpu_data();
  std::fill(d, d + data->count(), 0.f);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < rh; ++y)
      for (int x = 0; x < rw; ++x)
        d[(c * s + y) * s + x] = resized.at<cv::Vec3b>(y, x)[c] - mean[c];
  float* info = net.blob_by_name("im_info")->mutable_cpu_data();
  info[0] = rh; info[1] = rw; info[2] = static_cast<float>(scale);
  net.Reshape();
  net.Forward();

  const Blob<float>* rois = net.blob_by_name("person_rois").get();
  const Blob<float>* scores = net.blob_by_name("person_scores").get();
  const Blob<float>* parts = net.blob_by_name(parts_blob).get();
  const int n = rois->num();
  const int k = parts->channels(), p = parts->height();
  // Ins.+Glo.: class-agnostic masks, labelled by the global parsing at the feature stride.
  cv::Mat global_labels;
  const bool instance = parts_blob == "mask_prob";
  if (instance) {
    if (!net.has_blob("global_prob")) return Fail("--parts mask_prob needs the blob global_prob");
    const Blob<float>* g = net.blob_by_name("global_prob").get();
    const int stride = (s - 1) / std::max(g->height() - 1, 1);
    std::vector<double> ys, xs;
    for (int y = 0; y < rh; ++y) ys.push_back(static_cast<double>(y) / stride);
    for (int x = 0; x < rw; ++x) xs.push_back(static_cast<double>(x) / stride);
    global_labels = ArgmaxSampled(g->cpu_data(), g->channels(), g->height(), g->width(), ys, xs);
  }
  const std::string txt = pos[3] + "_persons.txt";
  std::FILE* out = std::fopen(txt.c_str(), "w");
  if (!out) return Fail("cannot write " + txt);
  int written = 0;
  for (int i = 0; i < n; ++i) {
    const float score = scores->cpu_data()[i];
    if (score < score_thresh) continue;
    const float* box = rois->cpu_data() + i * 5 + 1;
    cv::Mat m = Paste(parts->cpu_data() + parts->offset(i), k, p, box, rh, rw);
    if (instance) {
      cv::Mat labelled(rh, rw, CV_8UC1, cv::Scalar(0));
      global_labels.copyTo(labelled, m > 0);
      m = labelled;
    }
    cv::Mat full;
    cv::resize(m, full, cv::Size(w, h), 0, 0, cv::INTER_NEAREST);
    const std::string png = pos[3] + "_person" + std::to_string(written) + ".png";
    if (!cv::imwrite(png, full)) { std::fclose(out); return Fail("cannot write " + png); }
    std::fprintf(out, "%d %.6g %.6g %.6g %.6g %.6g\n", written, score, (box[0] - kNetOffset) / scale,
                 (box[1] - kNetOffset) / scale, (box[2] - kNetOffset) / scale, (box[3] - kNetOffset) / scale);
    ++written;
  }
  std::fclose(out);
  std::printf("gpsnet_parse: %d person(s) of %d detected; maps %s_person<i>.png, list %s\n", written, n,
              pos[3].c_str(), txt.c_str());
  return 0;
}
#else
int main(int argc, char** argv) {
  LOG(FATAL) << "gpsnet_parse needs OpenCV (build the fork with USE_OPENCV=ON)";
}
#endif  // USE_OPENCV
