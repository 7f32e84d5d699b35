// hit_ratio: replays a trace (get; on a miss, insert) at one or more cache sizes and prints
// every implementation's hit ratio side by side, one line per size.
//
//   hit_ratio TRACE SIZE [SIZE...]                  TRACE: a file, one integer key per line
//   hit_ratio --trace-spec "zipf --s 0.99 --n 1048576 --length 1000000 --seed 1" 4096 16384
//
// The trace spec takes trace_gen's (and gen_trace.py's) arguments and generates the trace in
// process. Columns: lru (exact LRU), sim (TinyLfuPolicy driven by the single-threaded
// PolicySimulator in common/policy_replay.hpp: every read reaches the policy at once) and cache
// (the real streamcache::Cache with a fixed hash: reads reach the policy in batches). To add a
// column, add a ReplayColumn below.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/policy_replay.hpp"
#include "common/traces.hpp"

namespace {

using streamcache::bench::ReplayColumn;

constexpr ReplayColumn kColumns[] = {
    {"lru", &streamcache::bench::replay_lru},
    {"sim", &streamcache::bench::replay_tiny_lfu},
    {"cache", &streamcache::bench::replay_cache},
};

constexpr const char* kUsage =
    "usage: hit_ratio TRACE SIZE [SIZE...]\n"
    "       hit_ratio --trace-spec \"PATTERN [trace_gen options]\" SIZE [SIZE...]\n";

std::vector<uint64_t> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot open trace file " + path);
  std::vector<uint64_t> keys;
  std::string line;
  while (std::getline(in, line)) {
    // Like opt_lru.py: lines that are not integers (blank, markers) are skipped.
    if (line.empty() || line.find_first_not_of("0123456789") != std::string::npos) continue;
    keys.push_back(std::strtoull(line.c_str(), nullptr, 10));
  }
  return keys;
}

uint64_t parse_size(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("SIZE: not a non-negative integer: '" + text + "'");
  }
  return std::strtoull(text.c_str(), nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  try {
    std::vector<uint64_t> trace;
    std::string name;
    size_t first_size = 1;
    if (args[0] == "--trace-spec" || args[0].rfind("--trace-spec=", 0) == 0) {
      std::string spec;
      if (args[0] == "--trace-spec") {
        if (args.size() < 2) throw std::invalid_argument("--trace-spec: missing value");
        spec = args[1];
        first_size = 2;
      } else {
        spec = args[0].substr(std::string("--trace-spec=").size());
      }
      trace = streamcache::bench::generate_trace(spec);
      name = spec.substr(0, spec.find(' '));
    } else {
      trace = read_trace(args[0]);
      name = args[0];
    }
    if (first_size >= args.size()) throw std::invalid_argument("missing SIZE");
    std::vector<uint64_t> sizes;
    for (size_t i = first_size; i < args.size(); ++i) sizes.push_back(parse_size(args[i]));

    for (const uint64_t size : sizes) {
      std::printf("trace=%s size=%llu accesses=%zu", name.c_str(), static_cast<unsigned long long>(size),
                  trace.size());
      for (const ReplayColumn& column : kColumns) {
        const auto start = std::chrono::steady_clock::now();
        const double ratio = column.replay(trace, size);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        std::printf(" %s=%.4f (%.2fs)", column.name, ratio, took.count());
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hit_ratio: %s\n%s", e.what(), kUsage);
    return 2;
  }
  return 0;
}
