// pdl.cuh (private, CUDA code) — the first statement of every kernel that the cuda backend
// launches with programmatic dependent launch (GEMV, small-batch and cluster linears,
// layer_norm, fused attention, copy): see Note [GEMV and PDL] in nn_kernels.cu; and launch_ex,
// which launches them (and the cluster kernel) with their attributes.
#pragma once

#include <cstddef>

namespace tandem::backends::cuda::launch {

// pdl_wait_then_release(): waits until the preceding work of the stream has completed and its
// memory is visible (griddepcontrol.wait; a no-op when launched without the attribute), then
// lets the next PDL kernel be scheduled (griddepcontrol.launch_dependents). Call it before the
// kernel's first memory access.
__device__ __forceinline__ void pdl_wait_then_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// pdl_attribute(): the launch attribute of a PDL launch.
inline cudaLaunchAttribute pdl_attribute() {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  return attr;
}

// Launch: how launch_ex starts a kernel. pdl: programmatic stream serialization (the kernel must
// begin with pdl_wait_then_release()). cluster_y: thread-block clusters of 1 x cluster_y x 1
// blocks (0: no cluster attribute).
struct Launch {
  dim3 grid, block;
  std::size_t smem = 0;
  bool pdl = false;
  unsigned cluster_y = 0;
};

// LaunchConfig(stream, launch): the cudaLaunchConfig_t of a launch, owning its attributes (for
// cudaLaunchKernelEx, and for occupancy queries such as cudaOccupancyMaxActiveClusters).
struct LaunchConfig {
  LaunchConfig(cudaStream_t stream, const Launch& launch) {
    config.gridDim = launch.grid;
    config.blockDim = launch.block;
    config.dynamicSmemBytes = launch.smem;
    config.stream = stream;
    unsigned n = 0;
    if (launch.pdl) attr[n++] = pdl_attribute();
    if (launch.cluster_y > 0) {
      attr[n].id = cudaLaunchAttributeClusterDimension;
      attr[n].val.clusterDim.x = 1;
      attr[n].val.clusterDim.y = launch.cluster_y;
      attr[n].val.clusterDim.z = 1;
      ++n;
    }
    config.attrs = attr;
    config.numAttrs = n;
  }
  LaunchConfig(const LaunchConfig&) = delete;  // config.attrs points into this object
  LaunchConfig& operator=(const LaunchConfig&) = delete;

  cudaLaunchConfig_t config{};
  cudaLaunchAttribute attr[2] = {};
};

// launch_ex(stream, launch, kernel, args...): kernel<<<grid, block, smem, stream>>>(args...) with
// the launch's attributes. Returns the launch's error and clears it.
template <typename... Params, typename... Args>
cudaError_t launch_ex(cudaStream_t stream, const Launch& launch, void (*kernel)(Params...),
                      Args... args) {
  const LaunchConfig lc(stream, launch);
  const cudaError_t st = cudaLaunchKernelEx(&lc.config, kernel, static_cast<Params>(args)...);
  if (st != cudaSuccess) (void)cudaGetLastError();
  return st;
}

}  // namespace tandem::backends::cuda::launch
