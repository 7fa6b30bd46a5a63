#include "tandem/graph.h"

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/stream.h"

namespace tandem {

void run_graph(Stream& stream, std::uint64_t key, const std::function<void()>& body) {
  stream.device().state().throw_if_closed();
  stream.impl().run_graph(key, body, stream);
}

void forget_graph(Stream& stream, std::uint64_t key) {
  stream.synchronize();
  stream.impl().forget_graph(key);
}

}  // namespace tandem
