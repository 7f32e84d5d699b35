// Long tests: minutes each, so not part of scripts/test (run with `ctest -L long` in a
// release build). Each pins down behaviour that only shows after billions of operations.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "streamcache/streaming_map.hpp"

namespace {

using streamcache::EventKind;
using streamcache::StreamingMap;

// Compact timestamps keep 32 bits of each entry's sequence. An entry left unwritten while
// 2^31 other mutations go by must still come back in history with its exact sequence, and
// every shard's later entries with it (expanding near the cursor misread it as a future
// write, which cut its shard's history short). About 2^31 inserts: ~5 minutes.
TEST(CompactTimestampsLong, AnEntryUnwrittenFor2To31MutationsKeepsItsSequence) {
  streamcache::StreamingMapOptions options;
  options.mark_snapshot_end = true;  // a history cut short then ends instead of waiting
  StreamingMap<int, int, uint32_t> map(options);
  const uint64_t old_seq = map.insert(0, 0);
  constexpr int kOtherKeys = 256;
  constexpr uint64_t kMutations = (uint64_t{1} << 31) + (uint64_t{1} << 20);
  std::vector<uint64_t> last_seq(kOtherKeys + 1, 0);
  last_seq[0] = old_seq;
  for (uint64_t i = 0; i < kMutations; ++i) {
    const int key = 1 + static_cast<int>(i % kOtherKeys);
    last_seq[key] = map.insert(key, static_cast<int>(i));
  }
  ASSERT_GT(map.last_seq() - old_seq, uint64_t{1} << 31);

  std::vector<uint64_t> seen(kOtherKeys + 1, 0);
  uint64_t previous = 0;
  size_t events = 0;
  for (const auto& e : map.stream()) {
    if (e.kind == EventKind::kSnapshotEnd) break;
    ASSERT_EQ(e.kind, EventKind::kSnapshot);
    EXPECT_GT(e.seq, previous) << "history out of order";
    previous = e.seq;
    seen[e.key] = e.seq;
    ++events;
  }
  EXPECT_EQ(events, static_cast<size_t>(kOtherKeys + 1));
  EXPECT_EQ(seen, last_seq);
}

}  // namespace
