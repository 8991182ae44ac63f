#include <algorithm>
#include <climits>
#include <vector>

#include "caffe/util/bbox_util.hpp"
#include "caffe/util/nms.hpp"

namespace caffe {

namespace {

const int kNmsBlock = 64;  // boxes per mask word

// Block (row, col) of 64 x 64 boxes: thread t sets bit k of mask[i][col] (i = 64 row + t) when
// box 64 col + k comes after box i and its IoU with box i is above thresh. Blocks below the
// diagonal are never read by the scan and are skipped.
template <typename T>
__global__ void NmsMaskKernel(const int n, const T thresh, const T* boxes,
                              unsigned long long* mask) {  // NOLINT(runtime/int)
  const int row = blockIdx.y, col = blockIdx.x;
  if (row > col) return;
  const int words = (n + kNmsBlock - 1) / kNmsBlock;
  const int row_size = min(n - row * kNmsBlock, kNmsBlock);
  const int col_size = min(n - col * kNmsBlock, kNmsBlock);
  __shared__ T col_boxes[kNmsBlock * 4];
  if (threadIdx.x < col_size) {
    for (int k = 0; k < 4; ++k) {
      col_boxes[4 * threadIdx.x + k] = boxes[4 * (kNmsBlock * col + threadIdx.x) + k];
    }
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int i = kNmsBlock * row + threadIdx.x;
    const T* box = boxes + 4 * i;
    unsigned long long bits = 0;  // NOLINT(runtime/int)
    for (int k = row == col ? threadIdx.x + 1 : 0; k < col_size; ++k) {
      if (bbox_util::BoxIoU(box, col_boxes + 4 * k) > thresh) bits |= 1ULL << k;
    }
    mask[static_cast<size_t>(i) * words + col] = bits;
  }
}

}  // namespace

template <typename T>
void NmsSortedGpu(const int n, const T* gpu_boxes, const T thresh, const int max_keep,
                  NmsBuffers* buffers, std::vector<int>* keep) {
  keep->clear();
  if (n == 0) return;
  const int words = (n + kNmsBlock - 1) / kNmsBlock;
  CHECK_LE(2 * static_cast<int64_t>(n) * words, static_cast<int64_t>(INT_MAX))
      << "NmsSortedGpu: the IoU mask of " << n << " boxes is too large (n^2 / 8 bytes); "
      << "keep fewer boxes before the NMS (e.g. a smaller pre_nms_top_n)";
  std::vector<int> shape(1, 2 * n * words);  // two 32-bit halves per 64-bit word
  buffers->device.Reshape(shape);
  buffers->host.Reshape(shape);
  unsigned long long* d_mask =  // NOLINT(runtime/int)
      reinterpret_cast<unsigned long long*>(buffers->device.mutable_gpu_data());  // NOLINT
  const dim3 blocks(words, words);
  // NOLINT_NEXT_LINE(whitespace/operators)
  NmsMaskKernel<T><<<blocks, kNmsBlock>>>(n, thresh, gpu_boxes, d_mask);
  CUDA_POST_KERNEL_CHECK;
  // Only the n x words mask of these boxes comes to the host: the device buffer keeps the
  // capacity of the largest n it has seen, which its Blob::cpu_data() would copy whole.
  unsigned long long* h_mask =  // NOLINT(runtime/int)
      reinterpret_cast<unsigned long long*>(buffers->host.mutable_cpu_data());  // NOLINT
  CUDA_CHECK(cudaMemcpy(h_mask, d_mask, static_cast<size_t>(n) * words * sizeof(*h_mask),
                        cudaMemcpyDeviceToHost));
  std::vector<unsigned long long> removed(words, 0);  // NOLINT(runtime/int)
  for (int i = 0; i < n; ++i) {
    const int w = i / kNmsBlock;
    if (removed[w] & (1ULL << (i % kNmsBlock))) continue;
    keep->push_back(i);
    if (max_keep > 0 && static_cast<int>(keep->size()) >= max_keep) return;
    const unsigned long long* row = h_mask + static_cast<size_t>(i) * words;  // NOLINT
    for (int j = w; j < words; ++j) removed[j] |= row[j];
  }
}

template void NmsSortedGpu(const int, const float*, const float, const int, NmsBuffers*,
                           std::vector<int>*);
template void NmsSortedGpu(const int, const double*, const double, const int, NmsBuffers*,
                           std::vector<int>*);

}  // namespace caffe
