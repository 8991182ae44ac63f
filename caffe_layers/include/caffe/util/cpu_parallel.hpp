#ifndef CAFFE_UTIL_CPU_PARALLEL_HPP_
#define CAFFE_UTIL_CPU_PARALLEL_HPP_

// Threads for the CPU layers' loops (GPSNet fork, docs/fork.md "CPU threads").
//
// CAFFE_PARALLEL_FOR(work) before a `for` loop splits its iterations over OpenMP threads
// (schedule(static)) when the build has OpenMP and `work` (about the number of elements the
// loop touches) exceeds kParallelMinWork; otherwise the loop runs on the calling thread.
// Loops marked with it write disjoint outputs per iteration and keep every reduction inside
// one iteration, so their results do not depend on the number of threads (OMP_NUM_THREADS).

namespace caffe {
// Below this many elements a loop stays serial: starting the threads costs more.
const long kParallelMinWork = 32768;  // NOLINT(runtime/int)
}  // namespace caffe

#ifdef _OPENMP
#define CAFFE_OMP_STRINGIFY_(x) #x
#define CAFFE_OMP_PRAGMA_(x) _Pragma(CAFFE_OMP_STRINGIFY_(x))
#define CAFFE_PARALLEL_FOR(work) \
  CAFFE_OMP_PRAGMA_(omp parallel for schedule(static) \
                    if (static_cast<long>(work) > ::caffe::kParallelMinWork))  // NOLINT
#else
#define CAFFE_PARALLEL_FOR(work)
#endif

#endif  // CAFFE_UTIL_CPU_PARALLEL_HPP_
