// event.h — Event: a marker recorded on a stream, to wait on from the host or another stream.
//
// | state      | query() | wait()                 | elapsed_ms()       |
// |------------|---------|------------------------|--------------------|
// | unrecorded | true    | returns at once        | Error              |
// | recorded   | false   | blocks until complete  | Error              |
// | complete   | true    | returns / rethrows     | ms between events  |
// An event that completes on a faulted stream carries the stream's error: wait() rethrows it
// (without clearing the stream's error), a stream made to wait on it becomes faulted too.
// Recording again moves the event to the new point. Thread-safe.
#pragma once

#include <memory>

namespace tandem {

class Device;
class Stream;
namespace detail {
class EventImpl;
}

class Event {
 public:
  enum class Timing { kDisabled, kEnabled };
  explicit Event(Device& device, Timing timing = Timing::kDisabled);
  ~Event();
  Event(Event&&) noexcept;
  Event& operator=(Event&&) noexcept;

  // record(stream): the event completes when all work committed to `stream` so far has run.
  void record(Stream& stream);
  // wait(): blocks the calling thread until complete; rethrows the stream's error if any.
  void wait();
  // wait(stream): work committed to `stream` after this call runs only once the event completes.
  void wait(Stream& stream);
  [[nodiscard]] bool query() const;
  // elapsed_ms(end): milliseconds from this event to `end`; both timing-enabled and complete,
  // else Error(kInvalidArgument).
  [[nodiscard]] double elapsed_ms(const Event& end) const;

 private:
  std::unique_ptr<detail::EventImpl> impl_;
};

}  // namespace tandem
