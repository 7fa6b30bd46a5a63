// Graph-owned memory (Note [Graph-owned memory] in src/backends/cuda/graph_arena.h): graphs that
// run_graph captures hold kernels only, their allocations come from an arena the graph owns;
// leaks are errors; many threads capture and replay while others run eager work. Also the copy
// kernel (Kernels::copy on cuda), which keeps a forward's graph kernel-only; the fused encoder's
// graph is its one kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_launch.h"
#include "backends/cuda/cuda_stream.h"
#include "gpu_test_util.h"
#include "tandem/encoder.h"
#include "tandem/graph.h"
#include "tandem/kernels.h"
#include "tandem/nn/models.h"

namespace tandem {
namespace {

using backends::cuda::CudaStream;
using testing::download_all;
using testing::max_rel;

CudaStream& cuda_stream(Stream& s) { return static_cast<CudaStream&>(s.impl()); }

std::size_t aligned256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

class CudaGraphMemory : public testing::GpuTest<> {};

TEST_F(CudaGraphMemory, CapturedForwardsEqualEagerAndTheGraphsHoldKernelsOnly) {
  auto dev = testing::open_cuda();
  Stream& s = dev->current_stream();  // the models encode on the calling thread's stream
  const std::uint32_t seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::uint64_t key = 0;
  for (const char* name : {"mlp", "encoder"}) {
    auto m = nn::load_model(name, dev, {std::nullopt, 7});
    for (std::size_t batch : {1, 3, 33}) {  // GEMV path (1, 3) and cuBLASLt path (33)
      ++key;
      const nn::Shape shape = m->input_shape(batch);
      std::vector<float> host(shape.numel());
      const nn::Tensor x = nn::Tensor::from_host(dev, shape, host);
      const nn::Tensor out = nn::Tensor::empty(dev, m->output_shape(batch));
      // Two graphs: forward + copy into the static output, and forward_into it.
      for (const bool into : {false, true}) {
        key += 1000;
        int calls = 0;
        for (int round = 0; round < 3; ++round) {
          for (auto& v : host) v = dist(rng);
          {
            Encoder enc(s);  // same buffer, new values (host stays alive: synchronized below)
            dev->kernels().copy_from_host(enc, x.data(), host.data(), x.size_bytes());
          }
          const auto eager = m->forward(x).to_host();
          run_graph(s, key, [&] {
            ++calls;
            if (into) {
              m->forward_into(x, out);
              return;
            }
            const nn::Tensor y = m->forward(x);
            Encoder enc(s);
            dev->kernels().copy(enc, out.data(), y.data(), y.size_bytes());
          });
          const auto replayed = out.to_host();
          EXPECT_LE(max_rel(replayed, eager), 1e-4)
              << name << " batch " << batch << " into " << into << " round " << round;
        }
        const std::string what = std::string(name) + " batch " + std::to_string(batch) +
                                 (into ? " forward_into" : " forward+copy");
        EXPECT_EQ(calls, 2) << what << ": measured, then captured with the arena";
        const auto info = cuda_stream(s).graph_info(key);
        ASSERT_TRUE(info.has_value());
        EXPECT_EQ(info->memory_nodes, 0u) << what;
        EXPECT_EQ(info->memcpy_nodes, 0u) << what;
        EXPECT_EQ(info->host_nodes, 0u) << what;
        // The encoder at batch <= 2 is one fused kernel where the GPU runs it (Note [Fused
        // encoder]), 14 op by op.
        const bool fused = std::string(name) == "encoder" &&
                           backends::cuda::launch::encoder_stack_fits(batch, 32, 256, 4, 1024, 2, 1);
        if (fused) {
          EXPECT_EQ(info->kernel_nodes, into ? 1u : 2u) << what;
        } else {
          EXPECT_GE(info->kernel_nodes, 3u) << what;
        }
        EXPECT_GT(info->arena_bytes, 0u) << what;
        EXPECT_EQ(info->captures, 2) << what;
        if (std::string(name) == "mlp" && batch == 1) {  // own kernels only (cuBLAS may memset)
          // 3 GEMVs (+ the copy), nothing else; the arena: the workspace (+ the output).
          EXPECT_EQ(info->kernel_nodes, into ? 3u : 4u) << what;
          EXPECT_EQ(info->other_nodes, 0u) << what;
          EXPECT_EQ(info->arena_bytes, aligned256(2 * 1024 * 4) + (into ? 0 : aligned256(512 * 4)))
              << what;
        }
      }
    }
  }
  dev->close();  // drops the graphs and their arenas
}

TEST_F(CudaGraphMemory, AnOverflowedCaptureIsCapturedAgainWithAnArenaAndReplaysCorrectly) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::size_t n = 70'000;
  Buffer x(dev, n * sizeof(float), s), y(dev, n * sizeof(float), s), out(dev, sizeof(float), s);
  const std::int64_t before = dev->memory_stats().current_bytes;
  int calls = 0;
  auto body = [&] {
    ++calls;
    Buffer a(dev, n * sizeof(float), s);  // 280000 bytes
    Buffer b(dev, 3 * sizeof(float), s);  // 12 bytes
    {
      Buffer c(dev, 1000 * sizeof(float), s);  // freed before d: bump allocation never reuses it
      fill(s, c, 5.0f);
      sum(s, b, c);  // b[0] = 5000
    }
    Buffer d(dev, n * sizeof(float), s);
    scale(s, a, x, 2.0f);  // a = 2x
    add(s, d, a, x);       // d = 3x
    add(s, y, d, d);       // y = 6x
    sum(s, out, y);        // 6 * x * n
    EXPECT_EQ(dev->memory_stats().current_bytes - before,
              static_cast<std::int64_t>(2 * n * sizeof(float) + 3 * sizeof(float)));
  };
  for (int i = 1; i <= 5; ++i) {
    fill(s, x, static_cast<float>(i));
    fill(s, y, -1.0f);
    run_graph(s, 11, body);
    ASSERT_EQ(download_all(s, out)[0], 6.0f * i * n) << "replay " << i;
    const auto hy = download_all(s, y);
    ASSERT_EQ(hy.front(), 6.0f * i);
    ASSERT_EQ(hy.back(), 6.0f * i);
  }
  EXPECT_EQ(calls, 2);  // the first capture overflowed (no arena yet), the second fit
  const auto info = cuda_stream(s).graph_info(11);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->captures, 2);
  EXPECT_EQ(info->arena_bytes, aligned256(n * 4) + aligned256(12) + aligned256(4000) +
                                   aligned256(n * 4));
  EXPECT_EQ(info->memory_nodes, 0u);
  EXPECT_EQ(dev->memory_stats().current_bytes, before);  // arena blocks are freed by the body

  // A body that allocates nothing is captured once, without an arena.
  int plain = 0;
  run_graph(s, 12, [&] {
    ++plain;
    scale(s, y, x, 1.0f);
  });
  s.synchronize();
  EXPECT_EQ(plain, 1);
  ASSERT_TRUE(cuda_stream(s).graph_info(12).has_value());
  EXPECT_EQ(cuda_stream(s).graph_info(12)->arena_bytes, 0u);
  EXPECT_EQ(cuda_stream(s).graph_info(12)->captures, 1);
}

// After a failed capture the stream runs eager work and other graphs correctly.
void expect_stream_works(const std::shared_ptr<Device>& dev, Stream& s, std::uint64_t key) {
  const std::size_t n = 5000;
  Buffer x(dev, n * sizeof(float), s), out(dev, sizeof(float), s);
  fill(s, x, 2.0f);
  sum(s, out, x);
  EXPECT_EQ(download_all(s, out)[0], 2.0f * n);
  for (int i = 1; i <= 3; ++i) {
    fill(s, x, static_cast<float>(i));
    run_graph(s, key, [&] {
      Buffer tmp(dev, n * sizeof(float), s);
      scale(s, tmp, x, 3.0f);
      sum(s, out, tmp);
    });
    EXPECT_EQ(download_all(s, out)[0], 3.0f * i * n);
  }
}

TEST_F(CudaGraphMemory, ABodyThatLeaksItsMemoryThrowsCachesNothingAndTheStreamKeepsWorking) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::int64_t before = dev->memory_stats().current_bytes;
  // 1: leaked on the first capture (a pool block: no arena yet). 2: leaked only on the second
  // capture, from the arena.
  for (int leak_on_call : {1, 2}) {
    std::optional<Buffer> escaped;
    int calls = 0;
    const auto key = static_cast<std::uint64_t>(100 + leak_on_call);
    try {
      run_graph(s, key, [&] {
        Buffer tmp(dev, 1000, s);
        fill(s, tmp, 1.0f);
        if (++calls == leak_on_call) escaped.emplace(std::move(tmp));
      });
      ADD_FAILURE() << "a leaking body was accepted (leak on call " << leak_on_call << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      const std::string what = e.what();
      EXPECT_NE(what.find(cuda_stream(s).label()), std::string::npos) << what;
      EXPECT_NE(what.find("1000 bytes"), std::string::npos) << what;
    }
    EXPECT_EQ(calls, leak_on_call);
    EXPECT_FALSE(cuda_stream(s).graph_info(key).has_value());
    ASSERT_TRUE(escaped.has_value());
    escaped.reset();  // an orphan: freeing it is a no-op, never a double free
    EXPECT_EQ(dev->memory_stats().current_bytes, before);
    expect_stream_works(dev, s, key);  // the same key, now with a correct body
    EXPECT_TRUE(cuda_stream(s).graph_info(key).has_value());
  }
}

TEST_F(CudaGraphMemory, ABodyThatAllocatesMoreWhenCapturedAgainThrowsAndTheStreamKeepsWorking) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::int64_t before = dev->memory_stats().current_bytes;
  int calls = 0;
  try {
    run_graph(s, 5, [&] {
      ++calls;
      Buffer tmp(dev, 1024 * static_cast<std::size_t>(calls), s);
      fill(s, tmp, 1.0f);
    });
    ADD_FAILURE() << "a body allocating differently was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("2048 bytes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(cuda_stream(s).graph_info(5).has_value());
  // A body that throws inside the capture: its scoped blocks are freed, nothing is cached.
  EXPECT_THROW(run_graph(s, 6,
                         [&] {
                           Buffer tmp(dev, 4096, s);
                           fill(s, tmp, 1.0f);
                           throw Error(ErrorKind::kInvalidArgument, "the body failed");
                         }),
               Error);
  EXPECT_FALSE(cuda_stream(s).graph_info(6).has_value());
  EXPECT_EQ(dev->memory_stats().current_bytes, before);
  expect_stream_works(dev, s, 6);
}

// 8 threads capture (each its own keys, arenas, overflow recaptures, cudaMalloc outside the
// capture) and replay their graphs while 8 others allocate, run kernels and synchronize eagerly.
TEST_F(CudaGraphMemory, EightThreadsCaptureAndReplayTheirGraphsWhileEightRunEagerWork) {
  RuntimeConfig c = RuntimeConfig::process();
  c.stream_pool_wait_ms = -1;
  auto dev = testing::open_cuda(c);
  auto mlp = nn::load_model("mlp", dev, {std::nullopt, 3});
  constexpr int kThreads = 8;
  std::atomic<int> errors{0};
  std::atomic<int> capturers_done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {  // eager
      testing::run_eager_kernels(dev, t, [&] { return capturers_done.load() >= kThreads; },
                                 errors);
    });
    threads.emplace_back([&, t] {  // capture and replay
      try {
        Stream& s = dev->current_stream();  // the model encodes on it
        const nn::Tensor x = nn::Tensor::empty(dev, mlp->input_shape(1));
        const nn::Tensor out = nn::Tensor::empty(dev, mlp->output_shape(1));
        const std::size_t n = 2048 + static_cast<std::size_t>(t) * 64;
        Buffer v(dev, n * sizeof(float), s), total(dev, sizeof(float), s);
        {
          Encoder enc(s);
          dev->kernels().fill(enc, x.data(), x.numel(), 0.25f);
        }
        const auto eager = mlp->forward(x).to_host();
        for (int key = 0; key < 20; ++key) {
          for (int replay = 0; replay < 5; ++replay) {
            fill(s, v, static_cast<float>(key + replay));
            run_graph(s, static_cast<std::uint64_t>(key), [&] {
              Buffer pad(dev, 1000 * static_cast<std::size_t>(key + 1), s);  // arenas differ
              Buffer tmp(dev, n * sizeof(float), s);
              scale(s, tmp, v, 2.0f);
              sum(s, total, tmp);  // the first n: 2 * (key + replay) * n
              mlp->forward_into(x, out);
            });
            if (download_all(s, total)[0] != 2.0f * static_cast<float>(key + replay) * n) {
              errors.fetch_add(1);
            }
            if (max_rel(out.to_host(), eager) > 1e-4) errors.fetch_add(1);
          }
          const auto info = cuda_stream(s).graph_info(static_cast<std::uint64_t>(key));
          if (!info || info->memory_nodes != 0 || info->memcpy_nodes != 0) errors.fetch_add(1);
        }
      } catch (const std::exception& e) {
        std::printf("capturer %d: %s\n", t, e.what());
        errors.fetch_add(1);
      }
      capturers_done.fetch_add(1);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  dev->close();
}

TEST_F(CudaGraphMemory, CopyIsExactAtEveryAlignmentAndSize) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  const std::size_t cap = (1 << 20) + 64;
  Buffer src(dev, cap, s), dst(dev, cap, s);
  std::vector<unsigned char> host(cap);
  std::mt19937 rng(1);
  for (auto& b : host) b = static_cast<unsigned char>(rng());
  {
    Encoder enc(s);
    dev->kernels().copy_from_host(enc, src.data(), host.data(), cap);
  }
  std::vector<unsigned char> back(cap);
  for (std::size_t src_off : {0, 1, 4, 16}) {
    for (std::size_t dst_off : {0, 3, 4, 32}) {
      for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{17},
                                std::size_t{4096 + 12}, std::size_t{1} << 20}) {
        Encoder enc(s);
        const auto& k = dev->kernels();
        k.fill(enc, dst.as<float>(), cap / 4, 0.0f);
        k.copy(enc, static_cast<char*>(dst.data()) + dst_off,
               static_cast<const char*>(src.data()) + src_off, bytes);
        k.copy_to_host(enc, back.data(), dst.data(), cap);
        enc.commit();
        s.synchronize();
        for (std::size_t i = 0; i < cap; ++i) {
          const bool inside = i >= dst_off && i < dst_off + bytes;
          const unsigned char want = inside ? host[i - dst_off + src_off] : 0;
          ASSERT_EQ(back[i], want) << "src+" << src_off << " dst+" << dst_off << " bytes " << bytes
                                   << " at " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// forget_graph: the cached graph (and its arena) is gone, the key captures a new body, a key
// never cached is no error. MemoryStats::graph_bytes counts the arena while the graph lives.
TEST_F(CudaGraphMemory, ForgetGraphDropsTheGraphAndTheKeyCapturesANewBody) {
  auto dev = testing::open_cuda();
  auto lease = dev->streams().lease();
  Stream& s = lease.stream();
  Buffer out(dev, 256 * sizeof(float), s);
  int calls = 0;
  for (const float value : {1.0f, 2.0f}) {
    run_graph(s, 9, [&] {
      ++calls;
      Buffer tmp(dev, 1024, s);  // an arena
      fill(s, tmp, value);
      fill(s, out, value);
    });
    ASSERT_TRUE(cuda_stream(s).graph_info(9).has_value());
    const auto arena = static_cast<std::int64_t>(cuda_stream(s).graph_info(9)->arena_bytes);
    EXPECT_GE(arena, 1024);
    EXPECT_EQ(dev->memory_stats().graph_bytes, arena);  // the arena, outside the pool's stats
    EXPECT_EQ(download_all(s, out).front(), value);
    forget_graph(s, 9);
    EXPECT_FALSE(cuda_stream(s).graph_info(9).has_value());
    EXPECT_EQ(dev->memory_stats().graph_bytes, 0);
  }
  EXPECT_EQ(calls, 4);  // each body captured twice (arena measure), the second a new body
  EXPECT_EQ(cuda_stream(s).graphs_cached(), 0u);
  forget_graph(s, 12345);  // nothing cached: nothing to do
}

}  // namespace
}  // namespace tandem
