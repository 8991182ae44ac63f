// The cuDNN convolution's algorithm search: caffe/util/cudnn_conv_search.hpp.
#ifdef USE_CUDNN
#include <algorithm>
#include <string>
#include <vector>

#include "caffe/util/cudnn_conv_search.hpp"
#include "caffe/util/math_mode.hpp"

namespace caffe {

namespace cudnn {

size_t ConvAlgos::max_bytes() const {
  return std::max(fwd_bytes, std::max(bwd_filter_bytes, bwd_data_bytes));
}

cudnnMathType_t ConvMathType() {
#if CUDNN_VERSION_MIN(8, 0, 0)
  return TF32Enabled() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
#else
  return CUDNN_DEFAULT_MATH;
#endif
}

size_t WorkspaceSliceBytes(size_t bytes) {
  return (bytes + kWorkspaceAlignBytes - 1) / kWorkspaceAlignBytes * kWorkspaceAlignBytes;
}

WorkspaceAllocator DeviceWorkspaceAllocator() {
  WorkspaceAllocator a;
  a.alloc = [](size_t bytes) -> void* {
    void* p = NULL;
    if (cudaMalloc(&p, bytes) == cudaSuccess) return p;
    cudaGetLastError();  // the failed allocation is not a kernel error
    return NULL;
  };
  a.release = [](void* p) { cudaFree(p); };
  return a;
}

ConvAlgos ReserveWorkspace(const std::string& layer, const ConvAlgos& algos, int slices,
    const std::function<ConvAlgos()>& no_workspace, void** data, size_t* bytes, void** slice,
    const WorkspaceAllocator& allocator) {
  CHECK_GT(slices, 0) << layer << ": a cuDNN workspace of no slices";
  ConvAlgos chosen = algos;
  const size_t need = WorkspaceSliceBytes(algos.max_bytes()) * slices;
  if (need > *bytes) {
    if (*data != NULL) allocator.release(*data);
    *bytes = 0;
    *data = allocator.alloc(need);
    if (*data != NULL) {
      DLOG(INFO) << layer << ": cuDNN workspace of " << need << " bytes";
      *bytes = need;
    } else {
      LOG(WARNING) << layer << ": cannot allocate a cuDNN workspace of " << need
                   << " bytes; using the algorithms that need none";
      chosen = no_workspace();
      CHECK_EQ(chosen.max_bytes(), 0) << layer << ": the cuDNN algorithms without workspace "
                                      << "need a workspace";
    }
  }
  const size_t slice_bytes = *bytes / slices;  // a multiple of kWorkspaceAlignBytes
  for (int g = 0; g < slices; ++g) {
    slice[g] = *data == NULL ? NULL : static_cast<char*>(*data) + g * slice_bytes;
  }
  return chosen;
}

int BatchBucket(int n) {
  CHECK_GE(n, 1) << "a cuDNN convolution's batch must not be empty";
  int bucket = 1;
  while (bucket < n) { bucket *= 2; }
  return bucket;
}

namespace {

void AppendTensor(cudnnTensorDescriptor_t t, std::vector<int>* key) {
  cudnnDataType_t type;
  int n, c, h, w, ns, cs, hs, ws;
  CUDNN_CHECK(cudnnGetTensor4dDescriptor(t, &type, &n, &c, &h, &w, &ns, &cs, &hs, &ws));
  const int dims[] = {static_cast<int>(type), BatchBucket(n), c, h, w, ns, cs, hs, ws};
  key->insert(key->end(), dims, dims + sizeof(dims) / sizeof(dims[0]));
}

}  // namespace

std::vector<int> ConvProblemKey(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
    cudnnTensorDescriptor_t y, cudnnConvolutionDescriptor_t conv) {
  std::vector<int> key;
  AppendTensor(x, &key);
  AppendTensor(y, &key);
  cudnnDataType_t type;
  cudnnTensorFormat_t format;
  int k, c, h, wd;
  CUDNN_CHECK(cudnnGetFilter4dDescriptor(w, &type, &format, &k, &c, &h, &wd));
  const int filter[] = {static_cast<int>(type), static_cast<int>(format), k, c, h, wd};
  key.insert(key.end(), filter, filter + 6);
  int pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w;
  cudnnConvolutionMode_t mode;
  cudnnDataType_t compute;
  CUDNN_CHECK(cudnnGetConvolution2dDescriptor(conv, &pad_h, &pad_w, &stride_h, &stride_w,
      &dilation_h, &dilation_w, &mode, &compute));
  const int geometry[] = {pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w,
                          static_cast<int>(mode), static_cast<int>(compute)};
  key.insert(key.end(), geometry, geometry + 8);
  return key;
}

ConvAlgos ConvAlgoCache::Get(const std::vector<int>& key, int ops, const Search& search,
                             const Fit& fit) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::vector<int>, Entry>::iterator it = entries_.find(key);
  if (it != entries_.end() && (it->second.ops & ops) == ops) {
    ConvAlgos algos = it->second.algos;
    if (fit(&algos)) {
      ++hits_;
      return algos;
    }
    ++searches_;
    return search(ops);  // this shape alone; the bucket keeps its first search
  }
  const int want = ops | (it == entries_.end() ? 0 : it->second.ops);
  ++searches_;
  const Entry entry = {search(want), want};
  entries_[key] = entry;
  return entry.algos;
}

ConvAlgoCache& ConvAlgoCache::Global() {
  static ConvAlgoCache cache;
  return cache;
}

namespace {

bool IsTensorOpMath(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// The math type a chosen result runs with: its own with TF32 allowed, else the FP32 one
// (a result reported with CUDNN_DEFAULT_MATH must not turn TF32 on by the back door).
cudnnMathType_t MathOf(cudnnMathType_t found) {
  return TF32Enabled() ? found : ConvMathType();
}

// One operation's choice, its descriptor left with the chosen math type. Where `searched`:
// cudnnFind*'s results (as many as max_count_of says), fastest first; the first that succeeded,
// fits limit_bytes, has an allowed math type and whose workspace cuDNN reports for desc (with that
// math type) is taken. Else `fallback` (no workspace) with ConvMathType(), which cuDNN must
// accept. max_count_of(&count), find(count, &n, perf) and workspace(algo, &bytes) are the
// operation's cudnnGet*AlgorithmMaxCount, cudnnFind*Algorithm and cudnnGet*WorkspaceSize.
template <typename Perf, typename Algo, typename MaxCount, typename Find, typename Workspace>
void Choose(const std::string& layer, const char* op, bool searched, size_t limit_bytes,
    cudnnConvolutionDescriptor_t desc, const MaxCount& max_count_of, const Find& find,
    const Workspace& workspace, Algo fallback, Algo* algo, cudnnMathType_t* math,
    size_t* bytes) {
  // Every search starts from ConvMathType() (cuDNN also tries CUDNN_DEFAULT_MATH).
  CUDNN_CHECK(cudnnSetConvolutionMathType(desc, ConvMathType()));
  std::vector<Perf> perf(1);
  int n = 0;
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
  if (searched) {
    int max_count = 0;
    CUDNN_CHECK(max_count_of(&max_count));
    perf.resize(std::max(max_count, 1));
    status = find(max_count, &n, &perf[0]);
  }
  for (int k = 0; searched && status == CUDNN_STATUS_SUCCESS && k < n; ++k) {
    if (perf[k].status != CUDNN_STATUS_SUCCESS) continue;
    if (perf[k].memory > limit_bytes) continue;
    if (!TF32Enabled() && IsTensorOpMath(perf[k].mathType)) continue;
    const cudnnMathType_t m = MathOf(perf[k].mathType);
    if (cudnnSetConvolutionMathType(desc, m) != CUDNN_STATUS_SUCCESS) continue;
    size_t b = 0;
    if (workspace(perf[k].algo, &b) != CUDNN_STATUS_SUCCESS || b > limit_bytes) continue;
    *algo = perf[k].algo;
    *math = m;
    *bytes = std::max(perf[k].memory, b);
    return;
  }
  if (searched) {
    LOG(WARNING) << layer << ": cuDNN " << op << " algorithm search: "
                 << (status == CUDNN_STATUS_SUCCESS ? "nothing usable within the workspace limit"
                                                    : cudnnGetErrorString(status))
                 << "; using the algorithm without workspace";
  }
  *algo = fallback;
  *math = ConvMathType();
  CUDNN_CHECK(cudnnSetConvolutionMathType(desc, *math));
  size_t b = 0;
  const cudnnStatus_t fallback_status = workspace(fallback, &b);
  CHECK_EQ(fallback_status, CUDNN_STATUS_SUCCESS) << layer << ": cuDNN refuses the " << op
      << " algorithm without workspace for this convolution: "
      << cudnnGetErrorString(fallback_status) << LastErrorMessage();
  *bytes = b;
}

// One convolution as cuDNN sees it (x, w, y and each operation's descriptor), and each
// operation's workspace query for an algorithm: the one place for their argument orders.
struct Problem {
  cudnnHandle_t handle;
  cudnnTensorDescriptor_t x;
  cudnnFilterDescriptor_t w;
  cudnnTensorDescriptor_t y;
  cudnnConvolutionDescriptor_t fwd_desc, bwd_filter_desc, bwd_data_desc;

  cudnnStatus_t FwdWorkspace(cudnnConvolutionFwdAlgo_t algo, size_t* bytes) const {
    return cudnnGetConvolutionForwardWorkspaceSize(handle, x, w, fwd_desc, y, algo, bytes);
  }
  cudnnStatus_t BwdFilterWorkspace(cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) const {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, x, y, bwd_filter_desc, w, algo,
                                                          bytes);
  }
  cudnnStatus_t BwdDataWorkspace(cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) const {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, w, y, bwd_data_desc, x, algo,
                                                        bytes);
  }
};

// The workspace of each algorithm in a, queried for p's descriptors (with a's math types);
// false where cuDNN refuses one or one exceeds limit_bytes.
bool QueryWorkspaceSizes(const Problem& p, size_t limit_bytes, ConvAlgos* a) {
  SetConvMathTypes(*a, p.fwd_desc, p.bwd_filter_desc, p.bwd_data_desc);
  size_t f = 0, bf = 0, bd = 0;
  if (p.FwdWorkspace(a->fwd, &f) != CUDNN_STATUS_SUCCESS ||
      p.BwdFilterWorkspace(a->bwd_filter, &bf) != CUDNN_STATUS_SUCCESS ||
      p.BwdDataWorkspace(a->bwd_data, &bd) != CUDNN_STATUS_SUCCESS) {
    return false;
  }
  if (std::max(f, std::max(bf, bd)) > limit_bytes) return false;
  a->fwd_bytes = f;
  a->bwd_filter_bytes = bf;
  a->bwd_data_bytes = bd;
  return true;
}

}  // namespace

void SetConvMathTypes(const ConvAlgos& a, cudnnConvolutionDescriptor_t fwd_desc,
    cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc) {
  CUDNN_CHECK(cudnnSetConvolutionMathType(fwd_desc, a.fwd_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_filter_desc, a.bwd_filter_math));
  CUDNN_CHECK(cudnnSetConvolutionMathType(bwd_data_desc, a.bwd_data_math));
}

ConvAlgos FindConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, size_t limit_bytes, int ops) {
  const Problem p = {handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc};
  ConvAlgos a;
  Choose<cudnnConvolutionFwdAlgoPerf_t>(layer, "forward", (ops & kConvFwd) != 0, limit_bytes,
      fwd_desc,
      [&](int* count) { return cudnnGetConvolutionForwardAlgorithmMaxCount(handle, count); },
      [&](int count, int* n, cudnnConvolutionFwdAlgoPerf_t* perf) {
        return cudnnFindConvolutionForwardAlgorithm(handle, x, w, fwd_desc, y, count, n, perf);
      },
      [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) { return p.FwdWorkspace(algo, bytes); },
      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &a.fwd, &a.fwd_math, &a.fwd_bytes);
  Choose<cudnnConvolutionBwdFilterAlgoPerf_t>(layer, "backward-filter",
      (ops & kConvBwdFilter) != 0, limit_bytes, bwd_filter_desc,
      [&](int* count) { return cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, count); },
      [&](int count, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
        return cudnnFindConvolutionBackwardFilterAlgorithm(handle, x, y, bwd_filter_desc, w,
                                                           count, n, perf);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
        return p.BwdFilterWorkspace(algo, bytes);
      },
      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, &a.bwd_filter, &a.bwd_filter_math,
      &a.bwd_filter_bytes);
  Choose<cudnnConvolutionBwdDataAlgoPerf_t>(layer, "backward-data",
      (ops & kConvBwdData) != 0, limit_bytes, bwd_data_desc,
      [&](int* count) { return cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, count); },
      [&](int count, int* n, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
        return cudnnFindConvolutionBackwardDataAlgorithm(handle, w, y, bwd_data_desc, x, count,
                                                         n, perf);
      },
      [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
        return p.BwdDataWorkspace(algo, bytes);
      },
      CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, &a.bwd_data, &a.bwd_data_math, &a.bwd_data_bytes);

  VLOG(1) << layer << ": cuDNN algorithms (operations searched: mask " << ops << "): forward "
          << a.fwd << " (" << a.fwd_bytes << " B), backward filter " << a.bwd_filter << " ("
          << a.bwd_filter_bytes << " B), backward data " << a.bwd_data << " ("
          << a.bwd_data_bytes << " B); math " << a.fwd_math << "/" << a.bwd_filter_math << "/"
          << a.bwd_data_math;
  return a;
}

ConvAlgos NoWorkspaceConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc) {
  return FindConvAlgos(layer, handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc, 0, 0);
}

ConvAlgos LayerConvAlgos(const std::string& layer, cudnnHandle_t handle,
    cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t y,
    cudnnConvolutionDescriptor_t fwd_desc, cudnnConvolutionDescriptor_t bwd_filter_desc,
    cudnnConvolutionDescriptor_t bwd_data_desc, int ops) {
  const size_t limit_bytes = CudnnWorkspaceLimitBytes();
  std::vector<int> key = ConvProblemKey(x, w, y, fwd_desc);
  int device = -1;
  CUDA_CHECK(cudaGetDevice(&device));
  key.push_back(device);
  key.push_back(TF32Enabled() ? 1 : 0);
  key.push_back(static_cast<int>(limit_bytes >> 20));  // whole MiB (math_mode.hpp)
  return ConvAlgoCache::Global().Get(key, ops,
      [&](int want) {
        return FindConvAlgos(layer, handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc,
                             limit_bytes, want);
      },
      [&](ConvAlgos* a) {
        const Problem p = {handle, x, w, y, fwd_desc, bwd_filter_desc, bwd_data_desc};
        const bool fits = QueryWorkspaceSizes(p, limit_bytes, a);
        VLOG(2) << layer << ": cached cuDNN algorithms " << (fits ? "taken" : "do not fit");
        return fits;
      });
}

}  // namespace cudnn

}  // namespace caffe
#endif  // USE_CUDNN
