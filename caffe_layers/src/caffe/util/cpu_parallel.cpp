#include <dirent.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <chrono>  // NOLINT(build/c++11)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "caffe/util/cpu_parallel.hpp"

namespace caffe {

namespace {

// Runnable threads of other processes now: /proc/loadavg's running count less this process's
// running threads (/proc/self/task/*/stat); -1 where /proc cannot tell.
int OtherRunnableThreads() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return -1;
  double l1, l5, l15;
  int running = 0, total = 0;
  const int got = std::fscanf(f, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total);
  std::fclose(f);
  if (got != 5) return -1;
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return -1;
  int own = 0;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/stat";
    FILE* s = std::fopen(path.c_str(), "r");
    if (!s) continue;
    char buf[512];
    const size_t n = std::fread(buf, 1, sizeof(buf) - 1, s);
    std::fclose(s);
    buf[n] = '\0';
    const char* close = std::strrchr(buf, ')');  // "pid (comm) S ..."
    if (close && close[1] == ' ' && close[2] == 'R') ++own;
  }
  closedir(dir);
  return running - own > 0 ? running - own : 0;
}

}  // namespace

bool ThreadsPay() {
#ifdef _OPENMP
  typedef std::chrono::steady_clock Clock;
  static std::atomic<Clock::rep> next_look(0);
  static std::atomic<bool> pay(true);
  static double others_avg = 0;  // only touched by the thread that wins next_look
  static const char* probe_env = std::getenv("CAFFE_PARALLEL_PROBE");
  // The load probe is opt-in: the threaded and the serial paths are not bit-identical (the GEMM
  // split sums in another order), so a probe that switches between them mid-run makes two runs of
  // the same seed differ (a resumed run no longer repeats its original).
  static const bool probe = probe_env && std::string(probe_env) == "1";
  if (omp_get_max_threads() < 2) return false;
  if (!probe) return true;
  const Clock::time_point now = Clock::now();
  Clock::rep due = next_look.load();
  if (now.time_since_epoch().count() >= due &&
      next_look.compare_exchange_strong(
          due, (now + std::chrono::milliseconds(250)).time_since_epoch().count())) {
    const int others = OtherRunnableThreads();
    if (others < 0) {
      pay = true;
    } else {
      // about the last second; threads pay while the other processes leave a core free
      others_avg = 0.5 * others_avg + 0.5 * others;
      pay = others_avg < 0.5 * omp_get_max_threads() - 0.5;
    }
  }
  return pay;
#else
  return false;
#endif
}

}  // namespace caffe
