// oneDNN as the CPU engine of Caffe's ConvolutionLayer (caffe/util/dnnl_conv.hpp, docs/fork.md).
#include <cstdlib>
#include <string>

#include "caffe/common.hpp"
#include "caffe/util/dnnl_conv.hpp"

#ifdef USE_DNNL
#include <pthread.h>
#include <signal.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <unordered_map>

#include "dnnl.hpp"
#endif

namespace caffe {

bool DnnlConvGeometry::operator==(const DnnlConvGeometry& o) const {
  return num == o.num && channels == o.channels && height == o.height && width == o.width &&
      num_output == o.num_output && out_height == o.out_height && out_width == o.out_width &&
      kernel_h == o.kernel_h && kernel_w == o.kernel_w && stride_h == o.stride_h &&
      stride_w == o.stride_w && pad_h == o.pad_h && pad_w == o.pad_w &&
      dilation_h == o.dilation_h && dilation_w == o.dilation_w && group == o.group &&
      bias == o.bias;
}

namespace {

// GPSNET_CPU_CONV selects the CPU convolution engine of every layer that does not name one:
// unset or "dnnl" lets oneDNN do the convolutions it handles, in float; "bf16" lets oneDNN do them
// with bfloat16 inputs (the CPU's AMX / AVX512-BF16 units; outputs and gradients stay float);
// "caffe" keeps all of them on Caffe's im2col + GEMM path. Read once per process.
enum CpuConvMode { kCaffeConv, kDnnlF32, kDnnlBf16 };

CpuConvMode CpuConvModeOfEnvironment() {
  static const CpuConvMode mode = [] {
    const char* v = std::getenv("GPSNET_CPU_CONV");
    const std::string s = v ? v : "";
    CHECK(s.empty() || s == "dnnl" || s == "bf16" || s == "caffe")
        << "GPSNET_CPU_CONV must be dnnl, bf16 or caffe (or unset), got '" << s << "'";
    return s == "caffe" ? kCaffeConv : s == "bf16" ? kDnnlBf16 : kDnnlF32;
  }();
  return mode;
}

}  // namespace

template <typename Dtype>
DnnlConvolution<Dtype>::~DnnlConvolution() {
  delete impl_;
}

#ifdef USE_DNNL

namespace {

using dnnl::memory;
typedef memory::format_tag tag;

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// oneDNN 2.x's JIT GEMM kernels (x64:gemm:jit: its f32 AVX2 and AVX-512 GEMMs, which it picks
// for GPSNet's dilated ASPP convolutions) point rsp into a heap buffer while they run, so a signal
// handled on such a thread pushes its frame into the heap: a Ctrl-C (the caffe tool's and
// gpsnet's handlers), a SIGTERM or a profiler's timer corrupted the heap at random, found later
// by a free ("corrupted size vs. prev_size", oneDNN issue #4845, fixed in oneDNN 3.11; Debian 12
// has 2.6). So while oneDNN computes, the asynchronous signals stay blocked on the threads that
// run its kernels: on the calling thread for the pass, on the OpenMP workers for good (they
// handle none; a thread libgomp makes during the pass inherits the caller's blocked mask). A
// signal sent meanwhile waits until the pass returns, or goes to another thread of the process.
// The synchronous ones (a fault in the pass) are not blocked.
class AsyncSignalsHeld {
 public:
  AsyncSignalsHeld() {
    static const sigset_t async = AsyncSignals();
    pthread_sigmask(SIG_BLOCK, &async, &old_);
#ifdef _OPENMP
    if (omp_get_max_threads() > 1) {
#pragma omp parallel
      {
        static thread_local bool held = false;
        if (!held && omp_get_thread_num() != 0) {
          pthread_sigmask(SIG_BLOCK, &async, NULL);
          held = true;
        }
      }
    }
#endif
  }
  ~AsyncSignalsHeld() { pthread_sigmask(SIG_SETMASK, &old_, NULL); }

 private:
  static sigset_t AsyncSignals() {
    sigset_t s;
    sigfillset(&s);
    const int synchronous[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof(synchronous) / sizeof(synchronous[0]); ++i) {
      sigdelset(&s, synchronous[i]);
    }
    return s;
  }
  sigset_t old_;
  AsyncSignalsHeld(const AsyncSignalsHeld&);
  AsyncSignalsHeld& operator=(const AsyncSignalsHeld&);
};

// Scratch memory for the reordered copies, shared by every DnnlConvolution of a thread: a pass is
// done with them when it returns (it waits for its stream), so a net holds one set, as large as its
// largest layer needs, not a set per layer (which doubled the full net's memory). One slot per
// role within a pass.
enum Slot { kSrc, kDiffDst, kWeights, kDst, kNumSlots };

class ScratchBuffer {
 public:
  ScratchBuffer() : data_(NULL), size_(0) {}
  ~ScratchBuffer() { std::free(data_); }
  void* Get(size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      size_ = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, size_);
      CHECK(data_) << "oneDNN convolution: out of memory for a " << size_ << "-byte buffer";
    }
    return data_;
  }

 private:
  void* data_;
  size_t size_;
  ScratchBuffer(const ScratchBuffer&);
  ScratchBuffer& operator=(const ScratchBuffer&);
};

memory Scratch(Slot slot, const memory::desc& md) {
  thread_local ScratchBuffer buffers[kNumSlots];
  return memory(md, CpuEngine(), buffers[slot].Get(md.get_size()));
}

// The data at ptr (in layout user) as layout want: the user's memory itself where the two
// agree, else a reorder of it into the scratch slot.
memory Into(const memory::desc& user, const memory::desc& want, const float* ptr, Slot slot,
            dnnl::stream* s) {
  memory mem(user, CpuEngine(), const_cast<float*>(ptr));
  if (user == want) return mem;
  memory b = Scratch(slot, want);
  dnnl::reorder(mem, b).execute(*s, mem, b);
  return b;
}

}  // namespace

template <typename Dtype>
struct DnnlConvolution<Dtype>::Impl {
  static const dnnl::algorithm kAlg = dnnl::algorithm::convolution_direct;
  DnnlConvGeometry g;
  dnnl::stream stream;
  memory::desc src_md, wei_md, bias_md, dst_md;   // Caffe's layouts: NCHW, (G)OIHW, X
  // The same shapes, layouts left to oneDNN: the inputs of a pass (src, weights, diff_dst) in the
  // mode's type (f32, or bf16 with GPSNET_CPU_CONV=bf16), its outputs (dst, diff_src,
  // diff_weights) in f32.
  memory::desc src_any, wei_any, ddst_any, dst_any, dsrc_any, dwei_any;
  memory::dims strides, dilates, pad_l, pad_r;
  dnnl::convolution_forward::primitive_desc fwd;
  bool have_backward;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights;

  explicit Impl(const DnnlConvGeometry& geo)
      : g(geo), stream(CpuEngine()), have_backward(false) {
    const memory::data_type f32 = memory::data_type::f32;
    src_md = memory::desc({g.num, g.channels, g.height, g.width}, f32, tag::nchw);
    dst_md = memory::desc({g.num, g.num_output, g.out_height, g.out_width}, f32, tag::nchw);
    wei_md = g.group == 1
        ? memory::desc({g.num_output, g.channels, g.kernel_h, g.kernel_w}, f32, tag::oihw)
        : memory::desc({g.group, g.num_output / g.group, g.channels / g.group, g.kernel_h,
                        g.kernel_w}, f32, tag::goihw);
    bias_md = memory::desc({g.num_output}, f32, tag::x);
    strides = {g.stride_h, g.stride_w};
    dilates = {g.dilation_h - 1, g.dilation_w - 1};   // oneDNN counts the holes
    pad_l = {g.pad_h, g.pad_w};
    pad_r = pad_l;   // oneDNN's output size is Caffe's floor division with equal padding
    const memory::data_type in =
        CpuConvModeOfEnvironment() == kDnnlBf16 ? memory::data_type::bf16 : f32;
    src_any = memory::desc(src_md.dims(), in, tag::any);
    wei_any = memory::desc(wei_md.dims(), in, tag::any);
    ddst_any = memory::desc(dst_md.dims(), in, tag::any);
    dst_any = memory::desc(dst_md.dims(), f32, tag::any);
    dsrc_any = memory::desc(src_md.dims(), f32, tag::any);
    dwei_any = memory::desc(wei_md.dims(), f32, tag::any);
    const dnnl::prop_kind prop = dnnl::prop_kind::forward_training;
    try {
      fwd = g.bias
          ? dnnl::convolution_forward::primitive_desc(dnnl::convolution_forward::desc(
                prop, kAlg, src_any, wei_any, bias_md, dst_any, strides, dilates, pad_l, pad_r),
                CpuEngine())
          : dnnl::convolution_forward::primitive_desc(dnnl::convolution_forward::desc(
                prop, kAlg, src_any, wei_any, dst_any, strides, dilates, pad_l, pad_r),
                CpuEngine());
    } catch (const dnnl::error& e) {
      LOG(FATAL) << "oneDNN has no " << (in == f32 ? "float" : "bf16 (GPSNET_CPU_CONV=bf16)")
                 << " convolution for this layer on this CPU (" << e.what() << ")"
                 << (in == f32 ? "" : ": bf16 needs AVX512-BF16 or AMX; unset GPSNET_CPU_CONV");
    }
  }

  void MakeBackward() {
    if (have_backward) return;
    bwd_data = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(kAlg, dsrc_any, wei_any, ddst_any, strides, dilates,
                                              pad_l, pad_r), CpuEngine(), fwd);
    // The bias gradient stays with Caffe (ConvolutionLayer::backward_cpu_bias).
    bwd_weights = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(kAlg, src_any, dwei_any, ddst_any, strides,
                                                 dilates, pad_l, pad_r), CpuEngine(), fwd);
    have_backward = true;
  }
};

template <typename Dtype>
DnnlConvolution<Dtype>::DnnlConvolution() : impl_(NULL) {}

template <typename Dtype>
bool DnnlConvolution<Dtype>::Handles(const ConvolutionParameter& param, int num_spatial_axes,
                                     int channel_axis) {
  return sizeof(Dtype) == sizeof(float) && num_spatial_axes == 2 && channel_axis == 1 &&
      param.engine() != ConvolutionParameter_Engine_CAFFE && CpuConvModeOfEnvironment() != kCaffeConv;
}

template <typename Dtype>
void DnnlConvolution<Dtype>::Forward(const DnnlConvGeometry& g, const Dtype* bottom,
    const Dtype* weight, const Dtype* bias, Dtype* top) {
  CHECK_EQ(sizeof(Dtype), sizeof(float)) << "oneDNN convolutions are float only";
  if (g.num == 0) return;
  AsyncSignalsHeld held;
  if (!impl_ || !(impl_->g == g)) {
    delete impl_;
    impl_ = NULL;
    impl_ = new Impl(g);
  }
  Impl& m = *impl_;
  const float* b = reinterpret_cast<const float*>(bottom);
  const float* w = reinterpret_cast<const float*>(weight);
  float* t = reinterpret_cast<float*>(top);
  memory src = Into(m.src_md, m.fwd.src_desc(), b, kSrc, &m.stream);
  memory wei = Into(m.wei_md, m.fwd.weights_desc(), w, kWeights, &m.stream);
  memory user_dst(m.dst_md, CpuEngine(), t);
  const bool direct = m.fwd.dst_desc() == m.dst_md;
  memory dst = direct ? user_dst : Scratch(kDst, m.fwd.dst_desc());
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (g.bias) {
    args[DNNL_ARG_BIAS] = memory(m.bias_md, CpuEngine(),
                                 const_cast<float*>(reinterpret_cast<const float*>(bias)));
  }
  dnnl::convolution_forward(m.fwd).execute(m.stream, args);
  if (!direct) dnnl::reorder(dst, user_dst).execute(m.stream, dst, user_dst);
  m.stream.wait();
}

template <typename Dtype>
void DnnlConvolution<Dtype>::Backward(const DnnlConvGeometry& g, const Dtype* top_diff,
    const Dtype* bottom, const Dtype* weight, Dtype* bottom_diff, Dtype* weight_diff) {
  CHECK_EQ(sizeof(Dtype), sizeof(float)) << "oneDNN convolutions are float only";
  if (g.num == 0 || (!bottom_diff && !weight_diff)) return;
  CHECK(impl_ && impl_->g == g) << "oneDNN convolution: backward without the forward pass "
                                << "of the same shapes";
  AsyncSignalsHeld held;
  Impl& m = *impl_;
  m.MakeBackward();
  const float* td = reinterpret_cast<const float*>(top_diff);
  memory ddst;   // top_diff as the weights pass wants it, kept for the data pass where they agree
  if (weight_diff) {
    memory src = Into(m.src_md, m.bwd_weights.src_desc(), reinterpret_cast<const float*>(bottom),
                      kSrc, &m.stream);
    ddst = Into(m.dst_md, m.bwd_weights.diff_dst_desc(), td, kDiffDst, &m.stream);
    memory dwei = Scratch(kWeights, m.bwd_weights.diff_weights_desc());
    dnnl::convolution_backward_weights(m.bwd_weights).execute(m.stream,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}});
    // weight_diff += dwei (a reorder into Caffe's layout with a sum post-op: Caffe accumulates).
    memory user_dwei(m.wei_md, CpuEngine(), reinterpret_cast<float*>(weight_diff));
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(sum);
    dnnl::reorder(dnnl::reorder::primitive_desc(dwei, user_dwei, attr))
        .execute(m.stream, dwei, user_dwei);
  }
  if (bottom_diff) {
    if (!ddst || ddst.get_desc() != m.bwd_data.diff_dst_desc()) {
      ddst = Into(m.dst_md, m.bwd_data.diff_dst_desc(), td, kDiffDst, &m.stream);
    }
    memory wei = Into(m.wei_md, m.bwd_data.weights_desc(), reinterpret_cast<const float*>(weight),
                      kWeights, &m.stream);
    memory user_dsrc(m.src_md, CpuEngine(), reinterpret_cast<float*>(bottom_diff));
    const bool direct = m.bwd_data.diff_src_desc() == m.src_md;
    memory dsrc = direct ? user_dsrc : Scratch(kDst, m.bwd_data.diff_src_desc());
    dnnl::convolution_backward_data(m.bwd_data).execute(m.stream,
        {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}});
    if (!direct) dnnl::reorder(dsrc, user_dsrc).execute(m.stream, dsrc, user_dsrc);
  }
  m.stream.wait();
}

#else  // a build without oneDNN: Caffe's path everywhere

template <typename Dtype>
struct DnnlConvolution<Dtype>::Impl {};

template <typename Dtype>
DnnlConvolution<Dtype>::DnnlConvolution() : impl_(NULL) {}

template <typename Dtype>
bool DnnlConvolution<Dtype>::Handles(const ConvolutionParameter&, int, int) {
  CpuConvModeOfEnvironment();   // a bad GPSNET_CPU_CONV is an error in every build
  return false;
}

template <typename Dtype>
void DnnlConvolution<Dtype>::Forward(const DnnlConvGeometry&, const Dtype*, const Dtype*,
                                     const Dtype*, Dtype*) {
  LOG(FATAL) << "this Caffe is built without oneDNN (GPSNET_DNNL)";
}

template <typename Dtype>
void DnnlConvolution<Dtype>::Backward(const DnnlConvGeometry&, const Dtype*, const Dtype*,
                                      const Dtype*, Dtype*, Dtype*) {
  LOG(FATAL) << "this Caffe is built without oneDNN (GPSNET_DNNL)";
}

#endif  // USE_DNNL

INSTANTIATE_CLASS(DnnlConvolution);

}  // namespace caffe
