// The cache's write order with epoch markers (CacheCore's Ext::kOrderEpochs), the layer
// under the StreamingMap's compact timestamps: entries keep the low 32 bits of their order
// key, and history walks must still hand back every key exactly, however far apart the
// keys are. A real map needs 2^31 mutations to age an entry that far; here a test
// extension writes whatever order keys it likes.
#include <absl/hash/hash.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "streamcache/detail/cache_core.hpp"

namespace {

using streamcache::RemovalCause;
using streamcache::detail::CacheConfig;
using streamcache::detail::CacheCore;
using streamcache::detail::HistoryCursor;

struct OrderKeyExtension {
  struct NodeExtra {
    uint32_t low = 0;
  };
  static constexpr bool kWriteOrder = true;
  static constexpr bool kOrderEpochs = true;
  static void set_marker_epoch(NodeExtra& x, uint32_t epoch) { x.low = epoch; }
  static uint32_t marker_epoch(const NodeExtra& x) { return x.low; }
  template <class K, class V>
  void removed_locked(NodeExtra&, const K&, const V&, RemovalCause) {}
};

using Core = CacheCore<int, int, absl::Hash<int>, std::equal_to<int>, OrderKeyExtension>;
constexpr uint64_t kEpoch = uint64_t{1} << 32;

CacheConfig<int, int> config(size_t shards) {
  CacheConfig<int, int> c;
  c.shards = shards;
  return c;
}

uint64_t full_key(const OrderKeyExtension::NodeExtra& x, uint32_t epoch) {
  return (static_cast<uint64_t>(epoch) << 32) | x.low;
}

/// A model of what the cache should hold: key -> its latest order key.
class Model {
 public:
  explicit Model(Core& core) : core_(core) {}

  void write(int key, uint64_t order) {
    core_.insert_with(key, key, [&](OrderKeyExtension::NodeExtra& x, const int&, const int&) {
      x.low = static_cast<uint32_t>(order);
      return order;
    });
    current_[key] = order;
  }
  /// Writes keys [0, count), each `step` after the one before; returns the next order key.
  uint64_t write_keys(int count, uint64_t order, uint64_t step) {
    for (int key = 0; key < count; ++key, order += step) write(key, order);
    return order;
  }
  void remove(int key) {
    core_.remove(key);
    current_.erase(key);
  }
  const std::map<int, uint64_t>& current() const { return current_; }

 private:
  Core& core_;
  std::map<int, uint64_t> current_;
};

/// One shard's history from `cursor` to its end, `max` entries per call.
std::vector<std::pair<int, uint64_t>> walk(Core& core, size_t shard, HistoryCursor& cursor, size_t max = 1000) {
  std::vector<std::pair<int, uint64_t>> seen;
  while (!cursor.done) {
    core.read_history(shard, cursor, max, Core::ExpiredEntries::kSkip,
                      [&](const OrderKeyExtension::NodeExtra& x, uint32_t epoch, const int& key, const int&) {
                        seen.emplace_back(key, full_key(x, epoch));
                        return true;
                      });
  }
  core.release_history(shard, cursor);
  return seen;
}

/// Every shard's history, checking that each shard's keys ascend.
std::map<int, uint64_t> whole_history(Core& core) {
  std::map<int, uint64_t> all;
  for (size_t s = 0; s < core.shard_count(); ++s) {
    HistoryCursor cursor;
    uint64_t previous = 0;
    for (const auto& [key, order] : walk(core, s, cursor, 7)) {
      EXPECT_GT(order, previous) << "shard " << s << " is out of order at key " << key;
      previous = order;
      EXPECT_TRUE(all.emplace(key, order).second) << "key " << key << " seen twice";
    }
  }
  return all;
}

size_t total_epoch_markers(const Core& core) {
  size_t n = 0;
  for (size_t s = 0; s < core.shard_count(); ++s) n += core.epoch_markers(s);
  return n;
}

TEST(WriteOrderEpochs, HistoryReadsOrderKeysExactlyWhenNeighboursAreEpochsApart) {
  Core core(config(4));
  Model model(core);
  uint64_t order = model.write_keys(200, 5, 3 * kEpoch + 7);  // neighbours far beyond +-2^31
  for (int key = 0; key < 200; key += 3) {  // rewrites move entries to later epochs
    model.write(key, order);
    order += kEpoch / 2;
  }
  for (int key = 1; key < 200; key += 5) model.remove(key);
  EXPECT_EQ(whole_history(core), model.current());
}

TEST(WriteOrderEpochs, AnEntryUnwrittenForManyEpochsKeepsItsKey) {
  Core core(config(1));
  Model model(core);
  model.write(1, 7);  // then never written again
  uint64_t order = 8;
  for (int round = 0; round < 50; ++round) {
    model.write(2, order);  // another key, rewritten in ever later epochs
    order += kEpoch + 1;
  }
  EXPECT_EQ(whole_history(core), model.current());
  EXPECT_LE(core.epoch_markers(0), 2u);  // the old key's epoch and the current one
}

TEST(WriteOrderEpochs, EpochMarkersGoWithTheirLastEntry) {
  Core core(config(2));
  Model model(core);
  uint64_t order = model.write_keys(300, 1, kEpoch);
  EXPECT_EQ(total_epoch_markers(core), 300u);
  for (int key = 0; key < 300; ++key) model.remove(key);
  EXPECT_LE(total_epoch_markers(core), core.shard_count());  // each shard keeps its last one
  model.write_keys(300, order, kEpoch);  // and reuses it
  EXPECT_EQ(total_epoch_markers(core), 300u);
  EXPECT_EQ(whole_history(core), model.current());
}

TEST(WriteOrderEpochs, SeekStartsAfterTheNewestOlderEntryAcrossEpochs) {
  Core core(config(1));
  Model model(core);
  uint64_t order = 3;
  std::vector<uint64_t> orders;
  for (int key = 0; key < 40; ++key) {
    model.write(key, order);
    orders.push_back(order);
    order += (key % 4 == 0 ? 2 * kEpoch : 17);  // runs within an epoch, then jumps
  }
  for (const uint64_t bound : {uint64_t{0}, orders[0], orders[9], orders[10] - 1, orders[23], orders[39]}) {
    HistoryCursor cursor;
    core.seek_history(0, cursor, [&](const OrderKeyExtension::NodeExtra& x, uint32_t epoch) {
      return full_key(x, epoch) <= bound;
    });
    std::vector<uint64_t> newer;
    for (const auto& [key, o] : walk(core, 0, cursor)) newer.push_back(o);
    std::vector<uint64_t> expected;
    for (const uint64_t o : orders) {
      if (o > bound) expected.push_back(o);
    }
    EXPECT_EQ(newer, expected) << "bound " << bound;
  }
}

// Writes, removals and paused walks interleaved at random: every entry a walk visits must
// carry exactly the key the model holds for it at that moment, whichever epoch markers
// came and went around the cursor meanwhile; quiescent history matches the model; the
// markers stay bounded.
TEST(WriteOrderEpochs, PausedWalksSeeExactKeysWhileWritesReshuffleEpochs) {
  std::mt19937_64 rng(20261206);
  for (int trial = 0; trial < 20; ++trial) {
    Core core(config(2));
    Model model(core);
    uint64_t order = 1;
    struct Walk {
      size_t shard;
      HistoryCursor cursor;
    };
    std::vector<Walk> walks;
    for (int step = 0; step < 3000; ++step) {
      const int key = static_cast<int>(rng() % 64);
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2:
          model.write(key, order);
          order += (rng() % 4 == 0) ? kEpoch * (1 + rng() % 3) : 1 + rng() % 1000;
          break;
        case 3:
          model.remove(key);
          break;
        case 4:
          if (walks.size() < 4) {
            walks.push_back(Walk{rng() % core.shard_count(), {}});
            if (rng() % 2 == 0) {
              const uint64_t bound = rng() % order;
              core.seek_history(walks.back().shard, walks.back().cursor,
                                [&](const OrderKeyExtension::NodeExtra& x, uint32_t epoch) {
                                  return full_key(x, epoch) <= bound;
                                });
            }
          }
          break;
        default:
          if (!walks.empty()) {
            Walk& w = walks[rng() % walks.size()];
            core.read_history(w.shard, w.cursor, 1 + rng() % 3, Core::ExpiredEntries::kSkip,
                              [&](const OrderKeyExtension::NodeExtra& x, uint32_t epoch, const int& k, const int&) {
                                const auto it = model.current().find(k);
                                EXPECT_NE(it, model.current().end()) << "visited removed key " << k;
                                if (it != model.current().end()) {
                                  EXPECT_EQ(full_key(x, epoch), it->second) << "key " << k;
                                }
                                return true;
                              });
            if (w.cursor.done) {
              core.release_history(w.shard, w.cursor);
              walks.erase(walks.begin() + (&w - walks.data()));
            }
          }
      }
      ASSERT_FALSE(::testing::Test::HasFailure()) << "trial " << trial << " step " << step;
    }
    for (Walk& w : walks) core.release_history(w.shard, w.cursor);
    EXPECT_EQ(whole_history(core), model.current()) << "trial " << trial;
    // E2: in each shard, one marker per epoch that holds entries, plus at most the last.
    for (size_t s = 0; s < core.shard_count(); ++s) {
      HistoryCursor cursor;
      std::map<uint64_t, int> epochs;
      for (const auto& [key, o] : walk(core, s, cursor)) ++epochs[o >> 32];
      EXPECT_LE(core.epoch_markers(s), epochs.size() + 1) << "trial " << trial << " shard " << s;
    }
  }
}

}  // namespace
