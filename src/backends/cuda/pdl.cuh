// pdl.cuh (private, device code) — the first statement of every kernel that the cuda backend
// launches with programmatic dependent launch (GEMV, small-batch and cluster linears,
// layer_norm, fused attention, copy): see Note [GEMV and PDL] in nn_kernels.cu.
#pragma once

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

// pdl_attribute(pdl): the launch attribute of a PDL launch (pass numAttrs = pdl ? 1 : 0).
inline cudaLaunchAttribute pdl_attribute() {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  return attr;
}

}  // namespace tandem::backends::cuda::launch
