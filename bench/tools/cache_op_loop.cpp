// cache_op_loop: a fixed number of operations of the Cache benchmark's workload, on one
// implementation and one thread, for counting instructions per operation under callgrind.
//
//   cache_op_loop IMPL WORKLOAD OPS
//     IMPL      streamcache | tbb | lru  (the adapters of common/cache_baselines.hpp)
//     WORKLOAD  read | mixed | write     (0, 1 or 4 puts in every four operations, as in
//                                         cache_benchmark's Read100, Read75Write25, Write100)
//
// Setup (key stream, prefill) costs the same whatever OPS is, so two runs cancel it:
//   for n in 1000000 3000000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null
//     build/release/bench/cache_op_loop streamcache read $n 2>&1 | grep Collected; done
// (one line in the shell)
// and (second - first) / 2000000 is instructions per operation. Instruction counts do not
// move with the machine's load or speed, unlike the timings, which on this 2-core VM swing
// by 2x (docs/notes/cache_benchmarks.md, session 19); they say nothing about cache misses
// or contention, which the benchmark measures.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/cache_baselines.hpp"
#include "common/cache_workload.hpp"

namespace {

using namespace streamcache::bench;
using namespace streamcache::bench::cache_workload;

template <class Impl>
uint64_t run(uint64_t writes_per_four, uint64_t ops) {
  std::unique_ptr<Impl> impl(make_prefilled<Impl>());
  const std::vector<uint64_t> keys = make_key_stream(0);
  uint64_t sink = 0;
  for (uint64_t i = 0; i < ops; ++i) {
    const uint64_t key = keys[i & (kStreamLength - 1)];
    if ((i & 3) < writes_per_four) {
      impl->put(key, i);
    } else if (const auto v = impl->get(key)) {
      sink += *v;
    }
  }
  return sink;
}

int usage() {
  std::fprintf(stderr, "usage: cache_op_loop streamcache|tbb|lru read|mixed|write OPS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return usage();
  const std::string impl = argv[1];
  const std::string workload = argv[2];
  const uint64_t ops = std::strtoull(argv[3], nullptr, 10);
  uint64_t writes_per_four = 0;
  if (workload == "mixed") {
    writes_per_four = 1;
  } else if (workload == "write") {
    writes_per_four = 4;
  } else if (workload != "read") {
    return usage();
  }
  uint64_t sink = 0;
  if (impl == "streamcache") {
    sink = run<StreamcacheAdapter<Expiry::kNone>>(writes_per_four, ops);
  } else if (impl == "tbb") {
    sink = run<TbbMapAdapter>(writes_per_four, ops);
  } else if (impl == "lru") {
    sink = run<MutexLruAdapter>(writes_per_four, ops);
  } else {
    return usage();
  }
  std::printf("%llu\n", static_cast<unsigned long long>(sink));  // keeps the loop's results alive
  return 0;
}
