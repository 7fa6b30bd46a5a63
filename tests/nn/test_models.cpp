// The reference models: PyTorch's parameter names and counts, deterministic random weights,
// input checks, batch independence, and many threads sharing one model.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tandem/device.h"
#include "tandem/encoder.h"
#include "tandem/error.h"
#include "tandem/kernels.h"
#include "tandem/nn/models.h"
#include "tandem/nn/resident.h"
#include "tandem/stream.h"
#include "test_util.h"

namespace tandem::nn {
namespace {

using test_util::random_input;

TEST(Models, MlpHasPyTorchsParameterNamesShapesAndCount) {
  const auto m = load_model("mlp", Device::get("cpu"));
  EXPECT_EQ(m->parameter_count(), 2'099'712u);
  std::vector<std::string> names;
  for (const auto& [n, t] : m->parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias",
                                              "4.weight", "4.bias"}));
  EXPECT_EQ(m->parameters()[0].second.shape(), (Shape{1024, 512}));
  EXPECT_EQ(m->input_shape(3), (Shape{3, 512}));
}

TEST(Models, EncoderHasPyTorchsParameterNamesAndCount) {
  const auto m = load_model("encoder", Device::get("cpu"));
  // Per layer: in_proj 768x256+768, out_proj 256x256+256, linear1 1024x256+1024,
  // linear2 256x1024+256, two LayerNorms 2x(256+256).
  EXPECT_EQ(m->parameter_count(), 2u * 789'760u);
  ASSERT_EQ(m->parameters().size(), 24u);
  EXPECT_EQ(m->parameters()[0].first, "layers.0.self_attn.in_proj_weight");
  EXPECT_EQ(m->parameters()[2].first, "layers.0.self_attn.out_proj.weight");
  EXPECT_EQ(m->parameters()[23].first, "layers.1.norm2.bias");
  EXPECT_EQ(m->input_shape(2), (Shape{2, 32, 256}));
}

TEST(Models, RandomWeightsAreDeterministicPerSeed) {
  auto dev = Device::get("cpu");
  const auto a = load_model("mlp", dev, {std::nullopt, 5})->state_dict();
  const auto b = load_model("mlp", dev, {std::nullopt, 5})->state_dict();
  const auto c = load_model("mlp", dev, {std::nullopt, 6})->state_dict();
  EXPECT_EQ(a[0].values, b[0].values);
  EXPECT_NE(a[0].values, c[0].values);
  // PyTorch-like scale: |w| <= 1/sqrt(fan_in).
  for (float w : a[2].values) ASSERT_LE(std::abs(w), 1.0f / 32.0f);
}

// Resident serving needs a backend with a resident mode (cuda): elsewhere a clear error, not a
// crash or a silent fallback. (The cuda tests cover the mode itself.)
TEST(Models, ResidentModelOnAHostBackendIsAClearError) {
  const auto m = load_model("mlp", Device::get("cpu"));
  try {
    ResidentModel r(m);
    ADD_FAILURE() << "a resident model started on the cpu backend";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
}

// Kernels::encoder_stack is optional: a backend without a fused encoder declines (false) and
// encodes nothing, and the encoder runs op by op (the cpu backend's encoder tests; the cuda
// tests cover the fused kernel).
TEST(Models, BackendsWithoutAFusedEncoderDeclineEncoderStack) {
  auto dev = Device::get("cpu");
  Stream& s = dev->current_stream();
  const EncoderLayerParams layer{};
  EncoderStackArgs args;
  args.batch = 1;
  args.seq = 32;
  args.d_model = 256;
  args.heads = 4;
  args.feed_forward = 1024;
  args.layers = &layer;
  args.n_layers = 1;
  Encoder enc(s);
  EXPECT_FALSE(dev->kernels().encoder_stack(enc, args));
  enc.commit();
  s.synchronize();
}

TEST(Models, UnknownModelIsNotFoundAndListsTheKnownOnes) {
  try {
    (void)load_model("resnet", Device::get("cpu"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("mlp, encoder"), std::string::npos) << e.what();
  }
}

TEST(Models, ForwardRejectsWrongInputsNamingTheExpectedShape) {
  auto dev = Device::get("cpu");
  const auto m = load_model("mlp", dev);
  const Tensor bad = Tensor::zeros(dev, Shape{2, 511});
  try {
    (void)m->forward(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("[2, 512]"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)m->forward(Tensor::zeros(dev, Shape{0, 512})), Error);
  EXPECT_THROW((void)m->forward(Tensor()), Error);
  const auto e = load_model("encoder", dev);
  EXPECT_THROW((void)e->forward(Tensor::zeros(dev, Shape{1, 32, 255})), Error);
  EXPECT_EQ(e->forward(Tensor::zeros(dev, Shape{1, 7, 256})).shape(), (Shape{1, 7, 256}));
}

TEST(Models, ForwardKeepsItsInputAndTheModelAliveUntilTheWorkHasRun) {
  auto dev = Device::get("cpu");
  const auto xv = random_input(3 * 512, 9);
  std::vector<float> expected;
  {
    const auto m = load_model("mlp", dev, {std::nullopt, 4});
    expected = m->forward(Tensor::from_host(dev, Shape{3, 512}, xv)).to_host();
  }
  Tensor y;
  {
    auto m = load_model("mlp", dev, {std::nullopt, 4});
    Tensor x = Tensor::from_host(dev, Shape{3, 512}, xv);
    y = m->forward(x);
    // Both dropped before the stream ran the forward (ASan would flag a use after free).
  }
  EXPECT_EQ(y.to_host(), expected);
}

TEST(Models, ForwardIntoWritesWhatForwardReturnsAndKeepsItsOutputAlive) {
  auto dev = Device::get("cpu");
  for (const char* name : {"mlp", "encoder"}) {
    const auto m = load_model(name, dev, {std::nullopt, 5});
    const Shape shape = m->input_shape(2);
    const Tensor x = Tensor::from_host(dev, shape, random_input(shape.numel(), 2));
    const auto expected = m->forward(x).to_host();
    Tensor out = Tensor::zeros(dev, m->output_shape(2));
    m->forward_into(x, out);
    EXPECT_EQ(out.to_host(), expected) << name;
    {
      Tensor dropped = Tensor::zeros(dev, m->output_shape(2));
      m->forward_into(x, dropped);  // dropped before the stream ran it (ASan would flag it)
    }
    dev->current_stream().synchronize();
    try {
      m->forward_into(x, Tensor::zeros(dev, m->output_shape(3)));
      ADD_FAILURE() << name << ": a wrong output shape was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("forward_into"), std::string::npos) << e.what();
    }
    EXPECT_THROW(m->forward_into(x, Tensor()), Error) << name;
  }
}

class ModelBatching : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelBatching, EachSampleDependsOnlyOnItsOwnInput) {
  auto dev = Device::get("cpu");
  const auto m = load_model(GetParam(), dev, {std::nullopt, 3});
  const std::size_t batch = 5;
  const Shape shape = m->input_shape(batch);
  const auto xv = random_input(shape.numel(), 1);
  const auto y = m->forward(Tensor::from_host(dev, shape, xv)).to_host();
  const std::size_t per = shape.numel() / batch;
  for (std::size_t i = 0; i < batch; ++i) {
    const std::vector<float> xi(xv.begin() + static_cast<std::ptrdiff_t>(i * per),
                                xv.begin() + static_cast<std::ptrdiff_t>((i + 1) * per));
    const auto yi = m->forward(Tensor::from_host(dev, m->input_shape(1), xi)).to_host();
    for (std::size_t j = 0; j < yi.size(); ++j) {
      ASSERT_NEAR(yi[j], y[i * yi.size() + j], 1e-5f) << "sample " << i << " element " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BothModels, ModelBatching, ::testing::Values("mlp", "encoder"));

}  // namespace
}  // namespace tandem::nn
