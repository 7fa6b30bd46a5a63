// test_util.h — helpers shared by the runtime tests.
#pragma once

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/basic_ops.h"
#include "tandem/buffer.h"
#include "tandem/config.h"
#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/stream.h"

namespace tandem::testing {

// A private cpu device with the given pool settings and policy.
inline std::shared_ptr<Device> open_cpu(int pool_size = 32, std::int64_t wait_ms = 0,
                                        EncodingLockPolicy policy = EncodingLockPolicy::kNone,
                                        const std::string& name = "cpu") {
  RuntimeConfig c;
  c.stream_pool_size = pool_size;
  c.stream_pool_wait_ms = wait_ms;
  c.encoding_lock = policy;
  return Device::open(name, c);
}

inline Buffer make_buffer(const std::shared_ptr<Device>& d, Stream& s,
                          const std::vector<float>& values) {
  Buffer b(d, values.size() * sizeof(float), s);
  upload(s, b, values);
  return b;
}

inline std::vector<float> read(Stream& s, const Buffer& b) {
  std::vector<float> out(b.size_bytes() / sizeof(float));
  download(s, out, b);
  s.synchronize();
  return out;
}

// Scoped environment variable (tests of the environment parsing).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.empty()) {
      ::unsetenv(name_.c_str());
    } else {
      ::setenv(name_.c_str(), old_.c_str(), 1);
    }
  }

 private:
  std::string name_, old_;
};

// Expect fn() to throw tandem::Error of `kind` whose message contains every one of `parts`.
template <class Fn>
::testing::AssertionResult throws_error(Fn&& fn, ErrorKind kind,
                                        const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.kind() != kind) {
      return ::testing::AssertionFailure() << "kind " << to_string(e.kind()) << " instead of "
                                           << to_string(kind) << ": " << e.what();
    }
    for (const auto& p : parts) {
      if (std::string(e.what()).find(p) == std::string::npos) {
        return ::testing::AssertionFailure() << "message lacks '" << p << "': " << e.what();
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "non-tandem exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "no exception";
}

}  // namespace tandem::testing
