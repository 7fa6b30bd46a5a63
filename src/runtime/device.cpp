// device.cpp — Device creation (registry of process devices), thread-local streams, shutdown.
#include "tandem/device.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <map>
#include <optional>
#include <thread>
#include <unordered_set>

#include "runtime/device_state.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem {
namespace detail {

Mutex& global_encoding_mutex() {
  static auto* mu = new Mutex();  // leaked: see Note [Device shutdown]
  return *mu;
}

namespace {
std::atomic<std::uint64_t> next_device_id{1};

std::string known_backends() {
  std::string s;
  for (const auto& b : registered_backends()) s += (s.empty() ? "" : ", ") + b->name();
  return s;
}

struct ParsedName {
  Backend* backend;
  int index;
};

ParsedName parse_device_name(std::string_view name) {
  const auto colon = name.find(':');
  const std::string_view backend_name = name.substr(0, colon);
  int index = 0;
  if (colon != std::string_view::npos) {
    const std::string_view idx = name.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(idx.data(), idx.data() + idx.size(), index);
    if (ec != std::errc() || ptr != idx.data() + idx.size() || index < 0) {
      throw Error(ErrorKind::kNotFound, "device name '" + std::string(name) +
                                            "' is malformed; expected BACKEND or BACKEND:INDEX "
                                            "with BACKEND one of: " + known_backends());
    }
  }
  for (const auto& b : registered_backends()) {
    if (b->name() != backend_name) continue;
    const int count = b->device_count();
    if (index >= count) {
      std::string why = b->unavailable_reason();
      throw Error(ErrorKind::kNotFound,
                  "device '" + std::string(name) + "' does not exist: backend " + b->name() +
                      " has " + std::to_string(count) + " device(s)" +
                      (why.empty() ? "" : " (" + why + ")") +
                      "; run `tandem info` to list devices");
    }
    return {b.get(), index};
  }
  throw Error(ErrorKind::kNotFound, "unknown backend '" + std::string(backend_name) +
                                        "' in device name '" + std::string(name) +
                                        "'; compiled-in backends: " + known_backends());
}

std::shared_ptr<Device> create(std::string_view name, const RuntimeConfig& config) {
  config.validate();
  ParsedName parsed = parse_device_name(name);
  auto impl = parsed.backend->open(parsed.index, config);
  auto state = std::make_unique<DeviceState>(
      parsed.backend->name() + ":" + std::to_string(parsed.index), *parsed.backend, parsed.index,
      config, std::move(impl));
  return DeviceState::make_device(std::move(state));
}

// Process devices by canonical name. Leaked, like the devices it holds (Note [Device shutdown]).
struct ProcessDevices {
  Mutex mu;
  std::map<std::string, std::shared_ptr<Device>> by_name TANDEM_GUARDED_BY(mu);
};
ProcessDevices& process_devices() {
  static auto* d = new ProcessDevices();
  return *d;
}

// Live devices, for the exit quiesce.
struct LiveDevices {
  Mutex mu;
  std::unordered_set<DeviceState*> states TANDEM_GUARDED_BY(mu);
};
LiveDevices& live_devices() {
  static auto* d = new LiveDevices();
  return *d;
}

// exiting: set once by the exit quiesce (release), read by throw_if_closed (acquire).
std::atomic<bool> exiting{false};

void quiesce_all_at_exit() {
  auto& live = live_devices();
  MutexLock lock(live.mu);
  exiting.store(true, std::memory_order_release);
  for (DeviceState* s : live.states) {
    s->closed_.store(true, std::memory_order_release);
    // Let the command buffer in hand finish (bounded), then park the workers.
    for (Stream* st : s->pool_->created_streams()) st->impl().stop(StreamImpl::StopMode::kQuiesce);
  }
}

}  // namespace

bool process_exiting() { return exiting.load(std::memory_order_acquire); }

void park_until_process_exit() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

void register_for_exit_quiesce(DeviceState* state) {
  static const bool registered = [] { return std::atexit(quiesce_all_at_exit) == 0; }();
  (void)registered;
  auto& live = live_devices();
  MutexLock lock(live.mu);
  live.states.insert(state);
}

void unregister_for_exit_quiesce(DeviceState* state) {
  auto& live = live_devices();
  MutexLock lock(live.mu);
  live.states.erase(state);
}

DeviceState::DeviceState(std::string name, Backend& backend, int index, RuntimeConfig config,
                         std::unique_ptr<BackendDevice> impl)
    : name_(std::move(name)),
      backend_(backend),
      backend_name_(backend.name()),
      index_(index),
      id_(next_device_id.fetch_add(1, std::memory_order_relaxed)),
      config_(std::move(config)),
      policy_(config_.encoding_lock.value_or(backend.default_encoding_lock())),
      impl_(std::move(impl)) {}

std::shared_ptr<Device> DeviceState::make_device(std::unique_ptr<DeviceState> state) {
  DeviceState* s = state.get();
  std::shared_ptr<Device> device(new Device(std::move(state)));
  s->pool_ = std::make_unique<StreamPool>(*device, s->config_.stream_pool_size,
                                          s->config_.stream_pool_wait_ms);
  s->self_ = device;
  register_for_exit_quiesce(s);
  return device;
}

void DeviceState::throw_if_closed() const {
  if (closed_.load(std::memory_order_acquire)) {
    if (process_exiting()) park_until_process_exit();
    throw Error(ErrorKind::kDeviceClosed,
                "device " + name_ + " is closed (Device::close() or process exit); "
                "get a new device with Device::get() or Device::open()");
  }
}

void DeviceState::note_alloc(std::int64_t bytes) {
  allocs_.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t now = current_bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::int64_t peak = peak_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void DeviceState::note_free(std::int64_t bytes) {
  frees_.fetch_add(1, std::memory_order_relaxed);
  current_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
}

}  // namespace detail

// ---- Device ------------------------------------------------------------------------------------

Device::Device(std::unique_ptr<detail::DeviceState> state) : state_(std::move(state)) {}

Device::~Device() {
  close();
  detail::unregister_for_exit_quiesce(state_.get());
}

std::shared_ptr<Device> Device::get(std::string_view name) {
  const RuntimeConfig& config = RuntimeConfig::process();
  auto& pd = detail::process_devices();
  // Canonicalize "cpu" -> "cpu:0" so both names give one device.
  std::string key(name);
  if (key.find(':') == std::string::npos) key += ":0";
  MutexLock lock(pd.mu);
  auto it = pd.by_name.find(key);
  if (it != pd.by_name.end()) return it->second;
  auto device = detail::create(name, config);
  pd.by_name.emplace(key, device);
  return device;
}

std::shared_ptr<Device> Device::get_default() {
  const RuntimeConfig& config = RuntimeConfig::process();
  if (!config.backend.empty()) return get(config.backend);
  const detail::Backend* best = nullptr;
  for (const auto& b : detail::registered_backends()) {
    if (b->device_count() > 0 && (!best || b->default_priority() > best->default_priority())) {
      best = b.get();
    }
  }
  if (!best) throw Error(ErrorKind::kNotFound, "no device available in any backend");
  return get(best->name());
}

std::shared_ptr<Device> Device::open(std::string_view name, const RuntimeConfig& config) {
  return detail::create(name, config);
}

std::vector<std::string> Device::backends() {
  std::vector<std::string> out;
  for (const auto& b : detail::registered_backends()) out.push_back(b->name());
  return out;
}

std::vector<std::string> Device::available() {
  std::vector<std::string> out;
  for (const auto& b : detail::registered_backends()) {
    const int n = b->device_count();
    for (int i = 0; i < n; ++i) out.push_back(b->name() + ":" + std::to_string(i));
  }
  return out;
}

const std::string& Device::name() const { return state_->name_; }
const std::string& Device::backend() const { return state_->backend_name_; }
int Device::index() const { return state_->index_; }
const RuntimeConfig& Device::config() const { return state_->config_; }
EncodingLockPolicy Device::encoding_lock_policy() const { return state_->policy_; }
bool Device::host_visible() const { return state_->backend_.host_visible(); }
StreamPool& Device::streams() { return *state_->pool_; }
const Kernels& Device::kernels() const { return state_->impl_->kernels(); }
bool Device::closed() const { return state_->closed_.load(std::memory_order_acquire); }

Stream& Device::default_stream() {
  state_->throw_if_closed();
  return state_->pool_->default_stream();
}

MemoryStats Device::memory_stats() const {
  return {state_->current_bytes_.load(std::memory_order_relaxed),
          state_->peak_bytes_.load(std::memory_order_relaxed),
          state_->allocs_.load(std::memory_order_relaxed),
          state_->frees_.load(std::memory_order_relaxed), state_->impl_->graph_bytes()};
}

void Device::synchronize() {
  state_->throw_if_closed();
  for (Stream* s : state_->pool_->created_streams()) s->synchronize();
}

void Device::close() {
  if (state_->closed_.exchange(true, std::memory_order_acq_rel)) return;
  for (Stream* s : state_->pool_->created_streams()) s->impl().stop(detail::StreamImpl::StopMode::kDrain);
}

// ---- Thread-local streams ----------------------------------------------------------------------

namespace {

// One entry per device this thread used. Destroyed at thread exit: each lease synchronizes its
// stream and returns it. The shared_ptr keeps the device (and so the pool) alive until then.
struct ThreadStreams {
  struct Entry {
    std::uint64_t device_id;
    std::shared_ptr<Device> device;
    std::optional<StreamLease> lease;
  };
  std::vector<Entry> entries;
  ~ThreadStreams() {
    // Leases in reverse order of acquisition; the device outlives its lease (declared before).
    while (!entries.empty()) entries.pop_back();
  }
};
thread_local ThreadStreams tls_streams;

}  // namespace

Stream& Device::current_stream() {
  state_->throw_if_closed();
  for (auto& e : tls_streams.entries) {
    if (e.device_id == state_->id_) return e.lease->stream();
  }
  // Prune entries of closed devices so a thread that outlives many devices does not grow.
  std::erase_if(tls_streams.entries, [](const auto& e) { return e.device->closed(); });
  std::shared_ptr<Device> self = state_->self_.lock();
  if (!self) throw Error(ErrorKind::kInternal, "device " + state_->name_ + " used during its destruction");
  auto lease = state_->pool_->lease();  // may throw kPoolExhausted
  tls_streams.entries.push_back({state_->id_, std::move(self), std::move(lease)});
  return tls_streams.entries.back().lease->stream();
}

}  // namespace tandem
