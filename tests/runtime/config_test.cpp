#include <gtest/gtest.h>

#include "test_util.h"

namespace tandem {
namespace {
using testing::ScopedEnv;
using testing::throws_error;

TEST(RuntimeConfig, DefaultsWhenNothingIsSet) {
  RuntimeConfig c = RuntimeConfig::from_environment();
  EXPECT_EQ(c.stream_pool_size, 32);
  EXPECT_EQ(c.stream_pool_wait_ms, 0);
  EXPECT_FALSE(c.encoding_lock.has_value());
}

TEST(RuntimeConfig, ReadsEveryVariable) {
  ScopedEnv a("TANDEM_STREAM_POOL_SIZE", "8");
  ScopedEnv b("TANDEM_STREAM_POOL_WAIT_MS", "-1");
  ScopedEnv c("TANDEM_ENCODING_LOCK", "global");
  ScopedEnv d("TANDEM_AGX_MODEL_WINDOW_US", "25");
  ScopedEnv e("TANDEM_CUDA_GRAPHS", "0");
  ScopedEnv f("TANDEM_CUDA_TF32", "1");
  ScopedEnv g("TANDEM_CUDA_PDL", "0");
  ScopedEnv h("TANDEM_CUDA_AUTOTUNE", "1");
  ScopedEnv i("TANDEM_CUDA_GRAPH_SIGNAL", "0");
  ScopedEnv j("TANDEM_CUDA_FUSED_ENCODER", "0");
  ScopedEnv k("TANDEM_CUDA_MMA_LINEAR", "0");
  ScopedEnv l("TANDEM_CUDA_BLOCK_CACHE", "0");
  RuntimeConfig cfg = RuntimeConfig::from_environment();
  EXPECT_EQ(cfg.stream_pool_size, 8);
  EXPECT_EQ(cfg.stream_pool_wait_ms, -1);
  EXPECT_EQ(cfg.encoding_lock, EncodingLockPolicy::kGlobal);
  EXPECT_EQ(cfg.agx_model_window_us, 25);
  EXPECT_FALSE(cfg.cuda_graphs);
  EXPECT_TRUE(cfg.cuda_tf32);
  EXPECT_FALSE(cfg.cuda_pdl);
  EXPECT_TRUE(cfg.cuda_autotune);
  EXPECT_FALSE(cfg.cuda_graph_signal);
  EXPECT_FALSE(cfg.cuda_fused_encoder);
  EXPECT_FALSE(cfg.cuda_mma_linear);
  EXPECT_FALSE(cfg.cuda_block_cache);
}

struct BadValue {
  const char* name;
  const char* value;
  const char* allowed;
};

class RuntimeConfigBadValue : public ::testing::TestWithParam<BadValue> {};

TEST_P(RuntimeConfigBadValue, IsAConfigErrorNamingTheVariableAndTheAllowedValues) {
  const BadValue& bad = GetParam();
  ScopedEnv env(bad.name, bad.value);
  EXPECT_TRUE(throws_error([] { (void)RuntimeConfig::from_environment(); }, ErrorKind::kConfig,
                           {bad.name, bad.value, bad.allowed}));
}

INSTANTIATE_TEST_SUITE_P(
    AllVariables, RuntimeConfigBadValue,
    ::testing::Values(BadValue{"TANDEM_STREAM_POOL_SIZE", "1", "2..64"},
                      BadValue{"TANDEM_STREAM_POOL_SIZE", "65", "2..64"},
                      BadValue{"TANDEM_STREAM_POOL_SIZE", "8x", "2..64"},
                      BadValue{"TANDEM_STREAM_POOL_SIZE", "", "2..64"},
                      BadValue{"TANDEM_STREAM_POOL_WAIT_MS", "-2", "-1 (wait forever)"},
                      BadValue{"TANDEM_STREAM_POOL_WAIT_MS", "soon", "-1 (wait forever)"},
                      BadValue{"TANDEM_ENCODING_LOCK", "mutex", "none, stream, global"},
                      BadValue{"TANDEM_AGX_MODEL_WINDOW_US", "-5", "0..100000"},
                      BadValue{"TANDEM_CUDA_GRAPHS", "yes", "0, 1"},
                      BadValue{"TANDEM_CUDA_AUTOTUNE", "2", "0, 1"},
                      BadValue{"TANDEM_CUDA_GRAPH_SIGNAL", "on", "0, 1"},
                      BadValue{"TANDEM_CUDA_FUSED_ENCODER", "16", "0, 1"},
                      BadValue{"TANDEM_CUDA_MMA_LINEAR", "-1", "0, 1"},
                      BadValue{"TANDEM_CUDA_BLOCK_CACHE", "yes", "0, 1"}),
    [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(RuntimeConfig, ValidateRejectsOutOfRangeFieldsSetInCode) {
  RuntimeConfig c;
  c.stream_pool_size = 100;
  EXPECT_TRUE(throws_error([&] { c.validate(); }, ErrorKind::kConfig,
                           {"TANDEM_STREAM_POOL_SIZE", "100"}));
  EXPECT_TRUE(throws_error([&] { (void)Device::open("cpu", c); }, ErrorKind::kConfig,
                           {"TANDEM_STREAM_POOL_SIZE"}));
}

TEST(EncodingLockPolicy, ParsesAndPrintsEveryPolicy) {
  for (auto p : {EncodingLockPolicy::kNone, EncodingLockPolicy::kStream, EncodingLockPolicy::kGlobal}) {
    EXPECT_EQ(parse_encoding_lock_policy(to_string(p)), p);
  }
  EXPECT_FALSE(parse_encoding_lock_policy("Global").has_value());
}

}  // namespace
}  // namespace tandem
