#include "runtime/backend.h"

namespace tandem::detail {

namespace {
std::vector<std::unique_ptr<Backend>>& registry() {
  // Leaked: backends stay usable while the process exits (Note [Device shutdown]).
  static auto* backends = new std::vector<std::unique_ptr<Backend>>();
  return *backends;
}
}  // namespace

void register_backend(std::unique_ptr<Backend> backend) { registry().push_back(std::move(backend)); }

const std::vector<std::unique_ptr<Backend>>& registered_backends() { return registry(); }

}  // namespace tandem::detail
