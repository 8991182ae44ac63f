// GPSNET_HOST_DEVICE marks the GPSNet layers' inline functions that both their CPU (.cpp) and
// their CUDA (.cu) code call: __host__ __device__ under nvcc, nothing elsewhere (the CPU build,
// and the host compiler's pass over a .cpp file of the CUDA build).
#ifndef CAFFE_UTIL_HOST_DEVICE_HPP_
#define CAFFE_UTIL_HOST_DEVICE_HPP_

#ifdef __CUDACC__
#define GPSNET_HOST_DEVICE __host__ __device__
#else
#define GPSNET_HOST_DEVICE
#endif

#endif  // CAFFE_UTIL_HOST_DEVICE_HPP_
