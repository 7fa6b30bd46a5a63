// graph.h — run_graph: record a fixed sequence of stream work once, replay it cheaply.
//
// run_graph(stream, key, body):
//   - on a backend with graphs (cuda, TANDEM_CUDA_GRAPHS=1): the first call for (stream, key)
//     captures the work that body() encodes on `stream` into a CUDA graph (capture mode
//     thread-local: other threads' work and API calls are unaffected), instantiates it, caches it
//     on the stream, and launches it; later calls with the same key launch the cached graph and
//     do not call body. The graph is launched, not waited for: synchronize as usual.
//   - elsewhere (cpu, agx_model, TANDEM_CUDA_GRAPHS=0): calls body() every time.
// Contract for body (what a graph can replay): it encodes only on `stream`, always the same
// work for the same key, on device memory that stays at the same addresses for every replay
// (buffers owned by the caller, allocated before the first call); memory it allocates itself
// must be freed before it returns (Buffers and Tensors scoped inside body); no synchronize, no
// host copies (upload/download), no Event waits on other streams. Encoder::dispatch functions
// become host nodes that run at every replay; Encoder::defer releases are kept until the graph
// is destroyed (Device::close or process exit).
// Graph-owned memory (cuda): what body allocates on `stream` comes from an arena that the graph
// owns (one device allocation, outside the device's memory pool, freed with the graph), so the
// graph holds kernels (and host nodes) only. Its size is measured by capturing body once, so
// **body runs twice on the first call for a key that allocates** (then never again); it must
// allocate the same each time. A body that returns with memory it allocated still allocated:
// Error(kInvalidArgument) naming the stream and the bytes, nothing cached (the
// escaped blocks must not be used; freeing them is harmless); a body whose
// second capture allocates more than its first: Error(kInvalidArgument), nothing cached.
// Keys are the caller's: e.g. a model id combined with the batch shape.
// A replay's launch is encoding: it holds the encoding lock of the device's policy
// (TANDEM_ENCODING_LOCK). On cuda a synchronize right after the replay of a graph of kernels only
// waits on a word the graph's last kernel stores into host memory (TANDEM_CUDA_GRAPH_SIGNAL,
// Note [Graph completion signal]).
// Thread-safety: like any encoding on `stream` (its owner). The cache is per stream and
// thread-safe: look-up under a mutex, capture outside it, the first finisher's graph is kept.
// Errors: a failed capture throws (Error(kBackend) naming the call) and caches nothing; a
// stopped stream (Device::close) throws Error(kDeviceClosed).
#pragma once

#include <cstdint>
#include <functional>

namespace tandem {

class Stream;

void run_graph(Stream& stream, std::uint64_t key, const std::function<void()>& body);

// forget_graph(stream, key): waits for the work on `stream` (Stream::synchronize, which also
// reports its errors), then destroys the graph cached for `key` on it, with its arena, so that
// memory a graph's body used may be freed and the key reused with another body. Nothing to do
// when no graph is cached for `key` (or on a backend without graphs). For owners of graphs whose
// life is shorter than the stream's (a BatchQueue's executor, leasing a pool stream).
// Thread-safety: like run_graph (the stream's owner).
void forget_graph(Stream& stream, std::uint64_t key);

}  // namespace tandem
