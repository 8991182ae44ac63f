#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <chrono>  // NOLINT(build/c++11)
#include <cstdlib>
#include <string>

#include "caffe/util/cpu_parallel.hpp"

namespace caffe {

bool ThreadsStartFast() {
#ifdef _OPENMP
  typedef std::chrono::steady_clock Clock;
  static std::atomic<Clock::rep> next_probe(0);
  static std::atomic<bool> fast(true);
  static const char* probe_env = std::getenv("CAFFE_PARALLEL_PROBE");
  static const bool probe = !(probe_env && std::string(probe_env) == "0");
  if (omp_get_max_threads() < 2) return false;
  if (!probe) return true;
  const Clock::time_point now = Clock::now();
  if (now.time_since_epoch().count() >= next_probe.load() && !omp_in_parallel()) {
    next_probe = (now + std::chrono::milliseconds(250)).time_since_epoch().count();
#pragma omp parallel
    {
    }
    fast = Clock::now() - now < std::chrono::microseconds(250);
  }
  return fast;
#else
  return false;
#endif
}

}  // namespace caffe
