// safetensors reader/writer: round trips, and every class of hostile input the loader must
// reject with Error(kFormat) naming the tensor or field (never a crash, never a huge allocation).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tandem/device.h"
#include "tandem/error.h"
#include "tandem/nn/models.h"
#include "tandem/nn/safetensors.h"
#include "test_util.h"

namespace tandem::nn {
namespace {

std::vector<std::byte> file_with_header(const std::string& json, std::size_t data_bytes,
                                        std::optional<std::uint64_t> length = std::nullopt) {
  std::vector<std::byte> out(8 + json.size() + data_bytes, std::byte{0});
  const std::uint64_t n = length.value_or(json.size());
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, json.data(), json.size());
  return out;
}

// Expects parse() to fail with kFormat and a message containing `needle`.
void expect_rejected(const std::vector<std::byte>& bytes, const std::string& needle) {
  try {
    (void)SafetensorsFile::parse(bytes, "test.safetensors");
    FAIL() << "accepted; expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFormat) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' lacks '" << needle << "'";
    EXPECT_NE(std::string(e.what()).find("test.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RoundTripsTensorsAndMetadata) {
  const std::vector<HostTensor> tensors = {
      {"a", Shape{2, 3}, {1, 2, 3, 4, 5, 6}}, {"b.bias", Shape{1}, {7}}, {"empty", Shape{0, 4}, {}},
      {"scalar", Shape{}, {42}}};
  const auto bytes = serialize_safetensors(tensors, {{"format", "pt"}});
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "header padded to 8 bytes";
  const auto f = SafetensorsFile::parse(bytes);
  ASSERT_EQ(f.entries().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const auto& t : tensors) {
    const auto* e = f.find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->shape, t.shape);
    EXPECT_EQ(e->dtype, "F32");
    EXPECT_EQ(f.floats(t.name), t.values);
  }
}

TEST(Safetensors, WritesAndReadsFiles) {
  const auto path = test_util::unique_temp_path("tandem_test_rw");
  write_safetensors(path.string(), {{"x", Shape{3}, {1, 2, 3}}});
  const auto f = SafetensorsFile::read(path.string());
  EXPECT_EQ(f.floats("x"), (std::vector<float>{1, 2, 3}));
  std::filesystem::remove(path);
  EXPECT_THROW((void)SafetensorsFile::read(path.string()), Error);
}

TEST(Safetensors, WriterRejectsBadNamesAndSizes) {
  EXPECT_THROW((void)serialize_safetensors({{"", Shape{1}, {1}}}), Error);
  EXPECT_THROW((void)serialize_safetensors({{"__metadata__", Shape{1}, {1}}}), Error);
  EXPECT_THROW((void)serialize_safetensors({{"a", Shape{1}, {1}}, {"a", Shape{1}, {1}}}), Error);
  EXPECT_THROW((void)serialize_safetensors({{"a", Shape{2}, {1}}}), Error);
}

TEST(SafetensorsHostile, RejectsShortFilesAndBadHeaderLengths) {
  expect_rejected(std::vector<std::byte>(7), "8-byte header length");
  expect_rejected(file_with_header("{}", 0, 1000), "exceeds the 2 bytes");
  expect_rejected(file_with_header("{}", 0, 200'000'000ull), "exceeds the limit");
  expect_rejected(file_with_header("{}", 0, ~0ull), "exceeds the limit");
  expect_rejected(file_with_header("{", 0, 1), "too small");
  expect_rejected(file_with_header(" {}", 0), "does not start with '{'");
}

TEST(SafetensorsHostile, RejectsBadJsonAndWrongTypes) {
  expect_rejected(file_with_header("{\"a\":", 0), "not valid JSON");
  expect_rejected(file_with_header("{\"a\":1}", 0), "tensor 'a'");
  expect_rejected(file_with_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "dtype");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  "unknown dtype 'F99'");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
                  "non-negative integer");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
                  "non-negative integer");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4),
                  "shape");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4),
                  "data_offsets");
  expect_rejected(file_with_header("{\"__metadata__\":{\"k\":1}}", 0), "__metadata__");
  expect_rejected(file_with_header("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  "empty name");
  expect_rejected(file_with_header("[]", 0), "does not start with");
}

TEST(SafetensorsHostile, RejectsDeepNestingWithoutExhaustingTheStack) {
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_rejected(file_with_header(deep, 0), "nested");
}

TEST(SafetensorsHostile, RejectsOffsetsOutsideTheFileAndSizeMismatches) {
  expect_rejected(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4),
                  "tensor 'w': data_offsets [0, 8] lie outside");
  expect_rejected(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4),
                  "tensor 'w'");
  expect_rejected(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
                  "needs 8");
  expect_rejected(
      file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8),
      "tensor 'w'");
}

TEST(SafetensorsHostile, RejectsShapesWhoseSizeOverflows) {
  expect_rejected(
      file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                       "\"data_offsets\":[0,0]}}", 0),
      "overflows");
  expect_rejected(
      file_with_header("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
                       "\"data_offsets\":[0,0]}}", 0),
      "overflows");
  expect_rejected(file_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                                   "\"data_offsets\":[0,4]}}", 4),
                  "dimensions");
}

TEST(SafetensorsHostile, RejectsOverlapsGapsAndLeftoverBytes) {
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                  "overlap");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12),
                  "belong to no tensor");
  expect_rejected(file_with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8),
                  "cover 4 bytes");
}

TEST(SafetensorsHostile, TruncatedFilesAreRejectedAtEveryLength) {
  const auto good = serialize_safetensors({{"w", Shape{3, 5}, std::vector<float>(15, 1.0f)},
                                           {"b", Shape{5}, std::vector<float>(5, 2.0f)}});
  for (std::size_t len = 0; len < good.size(); ++len) {
    std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW((void)SafetensorsFile::parse(cut), Error) << "length " << len;
  }
}

TEST(SafetensorsHostile, OtherDtypesParseButAreNotReadAsFloat) {
  const auto f = SafetensorsFile::parse(
      file_with_header("{\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                       "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]}}", 12));
  EXPECT_THROW((void)f.floats("i"), Error);
  try {
    (void)f.floats("h");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'h' has dtype F16"), std::string::npos) << e.what();
  }
}

// Model loading is strict (load_state_dict(strict=True)): errors name the tensor.
class ModelWeights : public ::testing::Test {
 protected:
  std::string path_ = test_util::unique_temp_path("tandem_test_weights").string();
  void TearDown() override { std::filesystem::remove(path_); }
  std::vector<HostTensor> mlp_state() {
    return load_model("mlp", Device::get("cpu"), {std::nullopt, 7})->state_dict();
  }
  void expect_load_error(const std::string& needle) {
    try {
      (void)load_model("mlp", Device::get("cpu"), {path_, 0});
      FAIL() << "loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kFormat) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
};

TEST_F(ModelWeights, LoadsItsOwnStateDict) {
  auto state = mlp_state();
  write_safetensors(path_, state);
  const auto m = load_model("mlp", Device::get("cpu"), {path_, 0});
  const auto again = m->state_dict();
  ASSERT_EQ(again.size(), state.size());
  for (std::size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(again[i].name, state[i].name);
    EXPECT_EQ(again[i].values, state[i].values);
  }
}

TEST_F(ModelWeights, RejectsAMissingTensor) {
  auto state = mlp_state();
  state.erase(state.begin() + 3);  // 2.bias
  write_safetensors(path_, state);
  expect_load_error("missing tensor '2.bias'");
}

TEST_F(ModelWeights, RejectsAnUnexpectedTensor) {
  auto state = mlp_state();
  state.push_back({"6.weight", Shape{1}, {0}});
  write_safetensors(path_, state);
  expect_load_error("unexpected tensor '6.weight'");
}

TEST_F(ModelWeights, RejectsAWrongShape) {
  auto state = mlp_state();
  state[1] = {"0.bias", Shape{2, 512}, std::vector<float>(1024)};
  write_safetensors(path_, state);
  expect_load_error("tensor '0.bias' has shape [2, 512]; expected [1024]");
}

TEST_F(ModelWeights, RejectsAWrongDtype) {
  // Replace 4.bias (512 floats = 2048 bytes) by an I32 tensor of the same byte size, in place.
  auto bytes = serialize_safetensors(mlp_state());
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header(reinterpret_cast<const char*>(bytes.data() + 8), n);
  const auto at = header.find("\"4.bias\":{\"dtype\":\"F32\"");
  ASSERT_NE(at, std::string::npos) << header;
  header.replace(at + 19, 3, "I32");
  std::memcpy(bytes.data() + 8, header.data(), n);
  std::ofstream(path_, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  expect_load_error("tensor '4.bias' has dtype I32");
}

}  // namespace
}  // namespace tandem::nn
