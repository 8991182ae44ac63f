// GPSNET_TF32 and GPSNET_CUDNN_WORKSPACE_MB, read once (caffe/util/math_mode.hpp).
#ifndef CPU_ONLY
#include <glog/logging.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

#include "caffe/util/math_mode.hpp"

namespace caffe {

namespace {

bool ReadTF32() {
  const char* v = std::getenv("GPSNET_TF32");
  if (v == NULL || *v == '\0') return false;
  std::string s(v);
  for (size_t i = 0; i < s.size(); ++i) s[i] = std::tolower(s[i]);
  const bool on = (s == "1" || s == "true" || s == "yes" || s == "on");
  if (!on && s != "0" && s != "false" && s != "no" && s != "off") {
    LOG(WARNING) << "GPSNET_TF32=" << v << " is not 0/1: TF32 stays off";
  }
  if (on) {
    LOG(INFO) << "GPSNET_TF32=" << v << ": TF32 math for FP32 cuDNN convolutions "
              << "and cuBLAS GEMMs";
  }
  return on;
}

size_t ReadWorkspaceLimit() {
  size_t mb = kCudnnWorkspaceLimitMB;
  const char* v = std::getenv("GPSNET_CUDNN_WORKSPACE_MB");
  if (v != NULL && *v != '\0') {
    char* end = NULL;
    const long long n = std::strtoll(v, &end, 10);  // NOLINT(runtime/int)
    if (end != v && *end == '\0' && n >= 0) {
      mb = static_cast<size_t>(n);
    } else {
      LOG(WARNING) << "GPSNET_CUDNN_WORKSPACE_MB=" << v << " is not a number of MiB: using "
                   << kCudnnWorkspaceLimitMB;
    }
  }
  return mb << 20;
}

}  // namespace

bool TF32Enabled() {
  static const bool tf32 = ReadTF32();
  return tf32;
}

size_t CudnnWorkspaceLimitBytes() {
  static const size_t limit = ReadWorkspaceLimit();
  return limit;
}

}  // namespace caffe
#endif  // CPU_ONLY
