#ifndef CAFFE_UTIL_CPU_PARALLEL_HPP_
#define CAFFE_UTIL_CPU_PARALLEL_HPP_

// Threads for the CPU layers' loops (GPSNet fork, docs/fork.md "CPU threads").
//
// CAFFE_PARALLEL_FOR(work) before a `for` loop splits its iterations over the OpenMP threads
// (schedule(static), OMP_NUM_THREADS of them, default one per core) when the build has OpenMP
// and ParallelPays(work), `work` being about the number of elements the loop touches;
// otherwise the loop runs on the calling thread. Loops marked with it write disjoint outputs
// per iteration and keep every reduction inside one iteration, so their results do not depend
// on the number of threads.

namespace caffe {

// Below this many elements a loop stays serial: starting the threads costs more.
const double kParallelMinWork = 32768;

// Whether threads are used: always false without OpenMP or with one thread (OMP_NUM_THREADS),
// else true. With CAFFE_PARALLEL_PROBE=1 in the environment (opt-in): false while other processes
// keep the cores busy (their runnable threads, from /proc, averaged over about a second, leave no
// core free), where a threaded loop waits milliseconds for a preempted thread at its end; looked at
// again every 250 ms. The probe trades reproducibility for speed on a busy machine: the threaded and
// serial paths are not bit-identical, so a run whose load changes is not repeated exactly.
bool ThreadsPay();

inline bool ParallelPays(double work) {
  return work > kParallelMinWork && ThreadsPay();
}

}  // namespace caffe

#ifdef _OPENMP
#define CAFFE_OMP_STRINGIFY_(x) #x
#define CAFFE_OMP_PRAGMA_(x) _Pragma(CAFFE_OMP_STRINGIFY_(x))
#define CAFFE_PARALLEL_FOR(work) \
  CAFFE_OMP_PRAGMA_(omp parallel for schedule(static) \
                    if (::caffe::ParallelPays(static_cast<double>(work))))
#else
#define CAFFE_PARALLEL_FOR(work)
#endif

#endif  // CAFFE_UTIL_CPU_PARALLEL_HPP_
