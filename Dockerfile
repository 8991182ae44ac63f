# GPSNet-Caffe image: Debian 12 (the OS CI builds on) + the CUDA toolkit from NVIDIA's Debian 12
# repository + the fork built by the same scripts CI runs (scripts/install_system_deps,
# scripts/setup_python, scripts/build_fork).
#
#   docker build -t gpsnet .                                   # CUDA build for sm_90 (H100)
#   docker build --build-arg CUDA_ARCH_BIN="80 90" -t gpsnet .
#   docker build --build-arg FLAVOUR=cpu -t gpsnet:cpu .      # CPU_ONLY, no CUDA toolkit
#   docker run --gpus all --rm -it gpsnet gpsnet train --variant ad_fuse --gpu 0 --data /data/gps
FROM debian:12

ARG FLAVOUR=cuda
ARG CUDA_VERSION=13-0
ARG CUDA_ARCH_BIN=90
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# CUDA toolkit (nvcc, cuBLAS, cuRAND) from NVIDIA's Debian 12 repository.
RUN if [ "$FLAVOUR" = cuda ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
      && curl -fsSL -o /tmp/cuda-keyring.deb "$CUDA_REPO/cuda-keyring_1.1-1_all.deb" \
      && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
      && apt-get update \
      && apt-get install -y --no-install-recommends "cuda-nvcc-$CUDA_VERSION" "cuda-cudart-dev-$CUDA_VERSION" \
           "libcublas-dev-$CUDA_VERSION" "libcurand-dev-$CUDA_VERSION" \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PATH=/usr/local/cuda/bin:$PATH

# System packages: the same script CI uses.
COPY scripts/install_system_deps /tmp/install_system_deps
RUN /tmp/install_system_deps && rm -rf /var/lib/apt/lists/* /tmp/install_system_deps

RUN useradd --create-home --shell /bin/bash gpsnet
USER gpsnet
WORKDIR /home/gpsnet/gpsnet
COPY --chown=gpsnet:gpsnet . .

# Pinned upstream by git clone (verified commit), the venv, and the fork: the same scripts as CI.
ENV GPSNET_FETCH=git \
    CUDA_ARCH_BIN=${CUDA_ARCH_BIN}
RUN scripts/setup_python \
    && if [ "$FLAVOUR" = cuda ]; then scripts/build_fork --cuda --link; else scripts/build_fork; fi \
    && .venv/bin/python -c "import caffe, gpsnet; print(caffe.layer_type_list())"
ENV PATH=/home/gpsnet/gpsnet/.venv/bin:$PATH

CMD ["gpsnet", "--help"]
