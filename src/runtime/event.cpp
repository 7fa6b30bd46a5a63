#include "tandem/event.h"

#include "runtime/backend.h"
#include "runtime/device_state.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem {

Event::Event(Device& device, Timing timing)
    : impl_(device.state().impl_->create_event(timing == Timing::kEnabled)) {}
Event::~Event() = default;
Event::Event(Event&&) noexcept = default;
Event& Event::operator=(Event&&) noexcept = default;

void Event::record(Stream& stream) {
  stream.device().state().throw_if_closed();
  impl_->record(stream.impl());
}
void Event::wait() { impl_->wait_host(); }
void Event::wait(Stream& stream) {
  stream.device().state().throw_if_closed();
  impl_->wait_stream(stream.impl());
}
bool Event::query() const { return impl_->query(); }
double Event::elapsed_ms(const Event& end) const { return impl_->elapsed_ms(*end.impl_); }

}  // namespace tandem
