// fuzz_safetensors.cpp — libFuzzer target for the safetensors parser (clang only; built with
// -DTANDEM_BUILD_FUZZERS=ON, e.g. the `fuzz` preset). Any input must either parse into a file
// whose every entry lies inside the data section, or be rejected with Error(kFormat); a crash,
// a sanitizer report, a different error kind or a broken round trip is a bug.
//
//   cmake --preset fuzz && cmake --build --preset fuzz --target fuzz_safetensors
//   build/fuzz/tests/nn/fuzz_safetensors -max_total_time=600 -max_len=4096 \
//       /tmp/corpus tests/nn/fuzz_corpus     # new inputs go to /tmp/corpus
#include <cstddef>
#include <cstdint>
#include <span>

#include "tandem/error.h"
#include "tandem/nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tandem;
  using namespace tandem::nn;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  std::optional<SafetensorsFile> file;
  try {
    file.emplace(SafetensorsFile::parse(bytes, "fuzz"));
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kFormat) __builtin_trap();
    return 0;
  }
  // Invariants of an accepted file, and a round trip of its F32 tensors.
  std::vector<HostTensor> tensors;
  bool all_f32 = true;
  std::size_t covered = 0;
  for (const auto& e : file->entries()) {
    const auto b = file->bytes(e);
    if (b.size() != e.end - e.begin || e.begin != covered) __builtin_trap();
    covered = e.end;
    if (e.dtype == "F32") {
      tensors.push_back({e.name, e.shape, file->floats(e.name)});
    } else {
      all_f32 = false;
    }
  }
  if (covered + 8 > size) __builtin_trap();
  if (all_f32) {
    const auto again = SafetensorsFile::parse(serialize_safetensors(tensors, file->metadata()));
    if (again.entries().size() != file->entries().size()) __builtin_trap();
    for (const auto& t : tensors) {
      const auto* e = again.find(t.name);
      if (!e || !(e->shape == t.shape) || again.bytes(*e).size() != t.values.size() * 4) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
