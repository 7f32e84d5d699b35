// broadcast_op_loop: the Broadcast benchmark's single-producer, single-subscriber case on one
// thread, for counting instructions per message under callgrind (as cache_op_loop does for
// the Cache).
//
//   broadcast_op_loop IMPL MODE MESSAGES
//     IMPL   ring | spsc   (Broadcast<uint64_t> with Overflow::kBlock, as RingBlock; one
//                           boost::lockfree::spsc_queue, as SpscFanout with one subscriber)
//     MODE   batch         publish 64 messages one by one, then receive them with one
//                          recv_batch(64) (spsc: one pop(buffer, 64))
//            recv          the same, received one at a time
//            publish       publish only (ring: no subscriber; spsc: pop 64 at a time, which
//                          costs ~1 instruction per message)
//
// Run it with two message counts; the difference cancels the setup:
//   for n in 1048576 3145728; do valgrind --tool=callgrind --callgrind-out-file=/dev/null
//     build/release/bench/broadcast_op_loop ring batch $n 2>&1 | grep Collected; done
// (one line in the shell) and (second - first) / 2097152 is instructions per message.
// Instructions are what a thread pays when moving lines between cores is cheap (the
// machine's fast state, docs/notes/broadcast.md), not what the benchmark's two threads see
// when the lines' transfers dominate.
#include <boost/lockfree/spsc_queue.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/broadcast_baselines.hpp"
#include "streamcache/broadcast.hpp"

namespace {

using streamcache::bench::broadcast::kBatch;
using streamcache::bench::broadcast::kCapacity;

enum class Mode { kRecvBatch, kRecv, kPublish };

uint64_t run_ring(Mode mode, uint64_t messages) {
  streamcache::Broadcast<uint64_t> ring(
      streamcache::BroadcastOptions{.capacity = kCapacity, .overflow = streamcache::Overflow::kBlock});
  std::optional<streamcache::Subscriber<uint64_t>> sub;
  if (mode != Mode::kPublish) sub.emplace(ring.subscribe());
  std::vector<uint64_t> out;
  out.reserve(kBatch);
  uint64_t sink = 0;
  for (uint64_t i = 0; i < messages; i += kBatch) {
    for (uint64_t k = 0; k < kBatch; ++k) sink += ring.publish(i + k);
    if (mode == Mode::kRecvBatch) {
      out.clear();
      sub->recv_batch(out, kBatch);
      sink += out.back();
    } else if (mode == Mode::kRecv) {
      for (size_t k = 0; k < kBatch; ++k) sink += *sub->recv().value;
    }
  }
  return sink;
}

uint64_t run_spsc(Mode mode, uint64_t messages) {
  boost::lockfree::spsc_queue<uint64_t, boost::lockfree::capacity<kCapacity>> queue;
  uint64_t buffer[kBatch];
  uint64_t sink = 0;
  for (uint64_t i = 0; i < messages; i += kBatch) {
    for (uint64_t k = 0; k < kBatch; ++k) sink += queue.push(i + k) ? 1 : 0;
    if (mode == Mode::kRecv) {
      for (size_t k = 0; k < kBatch; ++k) {
        uint64_t v = 0;
        queue.pop(v);
        sink += v;
      }
    } else {
      const size_t n = queue.pop(buffer, kBatch);
      sink += buffer[n - 1];
    }
  }
  return sink;
}

int usage() {
  std::fprintf(stderr, "usage: broadcast_op_loop ring|spsc batch|recv|publish MESSAGES\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return usage();
  const std::string impl = argv[1];
  const std::string mode_name = argv[2];
  const uint64_t messages = std::strtoull(argv[3], nullptr, 10);
  Mode mode;
  if (mode_name == "batch") {
    mode = Mode::kRecvBatch;
  } else if (mode_name == "recv") {
    mode = Mode::kRecv;
  } else if (mode_name == "publish") {
    mode = Mode::kPublish;
  } else {
    return usage();
  }
  uint64_t sink = 0;
  if (impl == "ring") {
    sink = run_ring(mode, messages);
  } else if (impl == "spsc") {
    sink = run_spsc(mode, messages);
  } else {
    return usage();
  }
  std::printf("%llu\n", static_cast<unsigned long long>(sink));  // keeps the loop's results alive
  return 0;
}
