// kernels.cpp — the defaults of Kernels' optional entry points.
#include "tandem/kernels.h"

#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/resident.h"
#include "tandem/stream.h"

namespace tandem {

bool Kernels::encoder_stack(Encoder& enc, const EncoderStackArgs& args) const {
  (void)enc;
  (void)args;
  return false;
}

std::unique_ptr<ResidentChain> Kernels::start_resident_chain(
    Stream& stream, const std::vector<ResidentLayer>& layers, const ResidentConfig& config) const {
  (void)layers;
  (void)config;
  throw Error(ErrorKind::kInvalidArgument,
              "resident serving needs the cuda backend; device " + stream.device().name() +
                  " (backend " + stream.device().backend() +
                  ") has no resident mode: use forward() on a stream, or a cuda device");
}

}  // namespace tandem
