# GPSNet-Caffe image: Debian 12 (the OS CI builds on), the fork built by the same scripts CI runs
# (install_system_deps, fetch_caffe, setup_python, build_fork), in two stages: `build` holds compilers,
# -dev packages, the CUDA toolkit and the build tree (with the C++ tests of the CUDA build); the final
# stage only what runs (the install prefix, the venv with the project, the Debian runtime packages those
# link, the CUDA runtime libraries: no nvcc, no headers).
#
#   docker build -t gpsnet .                                   # CUDA build for sm_90 (H100), cuDNN, NCCL
#   docker build --build-arg CUDA_SOURCE=pypi -t gpsnet .     # the toolkit from PyPI's pinned wheels only
#   docker build --build-arg CUDA_ARCH_BIN="80 90" -t gpsnet .
#   docker build --build-arg FLAVOUR=cpu -t gpsnet:cpu .      # CPU_ONLY, no CUDA toolkit
#   docker build --build-arg GPSNET_FETCH=apt ...             # Caffe from Debian's source package (no GitHub)
#   docker run --gpus all --rm -it gpsnet gpsnet train --variant ad_fuse --gpu 0 --data /data/gps
# Without a daemon (buildah), behind a TLS proxy, with the base made by debootstrap: scripts/build_image.
ARG FLAVOUR=cuda

FROM debian:12 AS build
ARG FLAVOUR
ARG CUDA_VERSION=13-0
ARG CUDA_ARCH_BIN=90
ARG CUDA_REPO=https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64
# where the CUDA toolkit comes from: repo (CUDA_REPO), pypi (docker/cuda-wheels.txt), auto (repo, else pypi)
ARG CUDA_SOURCE=auto
# git: clone BVLC/caffe at the pinned commit; apt: Debian's caffe source package (both verified)
ARG GPSNET_FETCH=git
# a CA bundle for pip behind a TLS proxy, mounted read-only at build time (never stored in the image)
ARG PIP_CERT

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# System packages: the same script CI uses.
COPY scripts/install_system_deps /tmp/install_system_deps
RUN /tmp/install_system_deps && rm -rf /var/lib/apt/lists/* /tmp/install_system_deps

# The CUDA 13 toolkit with cuDNN and NCCL at /usr/local/cuda (docker/cuda_toolkit): from NVIDIA's
# Debian 12 repository where it answers, else from NVIDIA's wheels on PyPI (pinned with their sha256 in
# docker/cuda-wheels.txt; cuDNN and NCCL from there in both routes).
COPY docker/cuda_toolkit docker/cuda-wheels.txt /tmp/cuda/
RUN if [ "$FLAVOUR" = cuda ]; then \
      if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi \
      && apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
      && rm -rf /var/lib/apt/lists/* \
      && /tmp/cuda/cuda_toolkit "$CUDA_SOURCE"; \
    fi && rm -rf /tmp/cuda
ENV PATH=/usr/local/cuda/bin:$PATH

# The pinned Caffe source, the venv, the fork (ccache in a build cache), and the list of what it needs
# at run time. The paths are the final stage's: the venv and the install prefix are not relocatable.
ENV GPSNET_CACHE=/opt/gpsnet/cache \
    GPSNET_BUILD_DIR=/opt/gpsnet/cache/build/image \
    CCACHE_DIR=/opt/gpsnet/ccache \
    CUDA_ARCH_BIN=${CUDA_ARCH_BIN}
WORKDIR /opt/gpsnet/src
COPY . .
RUN --mount=type=cache,id=gpsnet-ccache,target=/opt/gpsnet/ccache \
    if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi \
    && GPSNET_FETCH="$GPSNET_FETCH" scripts/fetch_caffe \
    && scripts/setup_python \
    && if [ "$FLAVOUR" = cuda ]; then scripts/build_fork --cuda --tests --link; else scripts/build_fork; fi \
    && .venv/bin/python -c "import caffe, gpsnet; print(caffe.layer_type_list())" \
    && scripts/runtime_deps "$GPSNET_BUILD_DIR/install" .venv /opt/gpsnet/runtime \
    && find /opt/gpsnet/src/.venv -name __pycache__ -prune -exec rm -rf {} +

FROM debian:12
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/gpsnet/runtime /opt/gpsnet/runtime
RUN apt-get update \
    && xargs -a /opt/gpsnet/runtime/packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* \
    && echo /opt/gpsnet/runtime/lib > /etc/ld.so.conf.d/gpsnet.conf && ldconfig \
    && useradd --create-home --shell /bin/bash gpsnet
COPY --from=build /opt/gpsnet/cache/build/image/install /opt/gpsnet/cache/build/image/install
COPY --from=build /opt/gpsnet/src /opt/gpsnet/src
ENV PATH=/opt/gpsnet/src/.venv/bin:$PATH
USER gpsnet
WORKDIR /home/gpsnet
CMD ["gpsnet", "--help"]
