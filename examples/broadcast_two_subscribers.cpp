// One producer, two subscribers: each subscriber receives every message, in order. One
// reads a message at a time with recv(), the other in batches with recv_batch().
#include <streamcache/streamcache.hpp>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kMessages = 10000;

// assert() vanishes under NDEBUG (Release); an example that is also a test must still check.
void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) std::exit(EXIT_FAILURE);
}

}  // namespace

int main() {
  // A small ring that makes the producer wait for the slower subscriber (kBlock), so no
  // message is lost; the default, kOverwrite, would let a slow subscriber lag instead.
  streamcache::BroadcastOptions options;
  options.capacity = 64;
  options.overflow = streamcache::Overflow::kBlock;
  streamcache::Broadcast<int> feed(options);

  // Subscribe before publishing: a subscriber receives what is published after it joins.
  auto one_by_one = feed.subscribe();
  auto in_batches = feed.subscribe();

  std::vector<int> got_one_by_one;
  std::vector<int> got_in_batches;
  std::thread reader_a([&] {
    for (;;) {
      streamcache::Received<int> r = one_by_one.recv();
      if (r.status != streamcache::RecvStatus::kOk) break;  // kClosed once drained
      got_one_by_one.push_back(*r.value);
    }
  });
  std::thread reader_b([&] {
    while (in_batches.recv_batch(got_in_batches, 256) > 0) {
    }  // 0: closed and drained
  });

  for (int i = 0; i < kMessages; ++i) feed.publish(i);
  feed.close();  // the subscribers drain what is left, then see kClosed
  reader_a.join();
  reader_b.join();

  std::vector<int> expected(kMessages);
  for (int i = 0; i < kMessages; ++i) expected[i] = i;
  check(got_one_by_one == expected, "recv() saw every message in order");
  check(got_in_batches == expected, "recv_batch() saw every message in order");
  check(one_by_one.missed_total() == 0 && in_batches.missed_total() == 0, "nothing was missed");
  return EXIT_SUCCESS;
}
