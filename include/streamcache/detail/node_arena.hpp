// Per-shard storage for cache nodes, addressed by 32-bit ids.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>

#include "streamcache/detail/intrusive_list.hpp"

namespace streamcache::detail {

/// Node ids carry their shard in the low bits, so the maintenance thread can find a
/// node's shard (and lock it) without reading the node's key, which a writer may be
/// destroying at that moment.
struct NodeIdCodec {
  uint32_t shard_bits = 0;

  uint32_t shard_of(NodeId id) const { return id & ((1u << shard_bits) - 1); }
  uint32_t local_of(NodeId id) const { return id >> shard_bits; }
  NodeId make(uint32_t shard, uint32_t local) const { return (local << shard_bits) | shard; }
  /// The largest local index a shard may hand out; kNoNode is never produced.
  uint32_t max_local() const { return (kNoNode >> shard_bits) - 1; }
};

/// A growable array of fixed-size records whose addresses never change: chunk c holds
/// kFirstChunk << c records, so 27 chunks cover every 32-bit index and growth never
/// moves a record (a reader holding a Node& or an id stays valid).
///
/// Each record is `stride` bytes: `extra_slots` std::atomic<int64_t> (the expiry timestamps
/// the cache was configured with, so an entry pays only for the clocks it uses), followed
/// by a `Node`. The timestamps come first so that they sit right before the node's key and
/// value, which a read with expiry checks together: with the timestamps after a 48-byte
/// node, three reads in four touched a second cache line. Nodes and their slots are constructed once when their chunk is
/// allocated and destroyed with the arena; the cache constructs and destroys the key and
/// value inside a node itself.
///
/// Addressing: record(local) is one load and a multiply-add. Beside each chunk's address
/// the arena keeps its origin, the address record 0 would have if the chunk began there
/// (the chunk's address less its first index times the stride), so that no access
/// computes where its chunk starts. Every lookup and every policy hook reaches nodes this
/// way, maintenance several times per read it applies (docs/notes/cache_benchmarks.md,
/// session 19: 408 -> 371 instructions per read, bench/tools/cache_op_loop.cpp).
///
/// Thread safety: ensure() is called with the owning shard's lock held; node() may be
/// called concurrently from any thread for any index whose chunk exists (the origin is
/// published with release and read with acquire).
template <class Node>
class NodeArena {
 public:
  static constexpr uint32_t kFirstChunk = 64;
  static constexpr int kMaxChunks = 27;

  explicit NodeArena(uint32_t extra_slots)
      : extra_slots_(extra_slots),
        // Rounded up so that every record's Node is aligned (for over-aligned keys or values).
        slots_bytes_((extra_slots * sizeof(std::atomic<int64_t>) + alignof(Node) - 1) / alignof(Node) * alignof(Node)),
        stride_(slots_bytes_ + sizeof(Node)) {
    static_assert(alignof(Node) >= alignof(std::atomic<int64_t>));
    static_assert(sizeof(Node) % alignof(std::atomic<int64_t>) == 0);
  }

  NodeArena(const NodeArena&) = delete;
  NodeArena& operator=(const NodeArena&) = delete;

  ~NodeArena() {
    for (uint32_t local = 0; local < constructed_; ++local) {
      char* rec = record(local);
      reinterpret_cast<Node*>(rec + slots_bytes_)->~Node();
      auto* slots = reinterpret_cast<std::atomic<int64_t>*>(rec);
      for (uint32_t s = 0; s < extra_slots_; ++s) slots[s].~atomic();
    }
    for (char* chunk : chunks_) {
      if (chunk != nullptr) ::operator delete(chunk, std::align_val_t(alignof(Node)));
    }
  }

  /// Makes the record for `local` exist. Called under the shard's lock, for each local
  /// index in turn (0, 1, 2, ...). Records are constructed one by one as they are handed
  /// out, so the untouched tail of a fresh chunk costs address space, not memory.
  void ensure(uint32_t local) {
    const int c = chunk_of(local);
    if (chunks_[c] == nullptr) {
      const size_t n = chunk_size(c);
      char* chunk = static_cast<char*>(::operator new(n * stride_, std::align_val_t(alignof(Node))));
      chunks_[c] = chunk;
      // An integer, not a pointer: the origin itself may lie outside every allocation
      // (unsigned arithmetic wraps); only origin + local * stride_ for the chunk's own
      // indices is ever dereferenced.
      // release: pairs with the acquire in record(): a reader that sees the origin sees the
      // records constructed before it was published (and later ones through the shard lock
      // or the event log that hands their ids over).
      origins_[c].store(reinterpret_cast<uintptr_t>(chunk) - chunk_base(c) * stride_, std::memory_order_release);
      bytes_ += n * stride_;
    }
    while (constructed_ <= local) {
      char* rec = record(constructed_);
      new (rec + slots_bytes_) Node();
      auto* slots = reinterpret_cast<std::atomic<int64_t>*>(rec);
      for (uint32_t s = 0; s < extra_slots_; ++s) new (&slots[s]) std::atomic<int64_t>(0);
      ++constructed_;
    }
  }

  Node& node(uint32_t local) const { return *reinterpret_cast<Node*>(record(local) + slots_bytes_); }

  std::atomic<int64_t>* slots(uint32_t local) const {
    return reinterpret_cast<std::atomic<int64_t>*>(record(local));
  }

  /// Bytes allocated so far (for memory accounting).
  size_t bytes() const { return bytes_; }

 private:
  static int chunk_of(uint32_t local) {
    return std::bit_width(local / kFirstChunk + 1) - 1;
  }
  static size_t chunk_size(int c) { return static_cast<size_t>(kFirstChunk) << c; }
  static size_t chunk_base(int c) { return static_cast<size_t>(kFirstChunk) * ((size_t{1} << c) - 1); }

  char* record(uint32_t local) const {
    // acquire: pairs with the release store in ensure().
    const uintptr_t origin = origins_[chunk_of(local)].load(std::memory_order_acquire);
    return reinterpret_cast<char*>(origin + local * stride_);
  }

  const uint32_t extra_slots_;
  const size_t slots_bytes_;  // the timestamps before each Node
  const size_t stride_;
  size_t bytes_ = 0;
  uint32_t constructed_ = 0;  // records [0, constructed_) exist; guarded by the shard lock
  std::array<char*, kMaxChunks> chunks_{};  // guarded by the shard lock, like constructed_
  std::array<std::atomic<uintptr_t>, kMaxChunks> origins_{};  // see "Addressing"
};

}  // namespace streamcache::detail
