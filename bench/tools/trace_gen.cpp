// trace_gen: writes a synthetic cache trace, one integer key per line; the same command line
// and the same output as ../shared/traces/gen_trace.py.
//
//   trace_gen zipf --s 0.99 --n 1048576 --length 1000000 --seed 1 -o zipf.txt
//   trace_gen scanzipf --n 100000 --scan-every 50000 --scan-len 20000 --seed 2
//   trace_gen shift --length 1000000
//   trace_gen loop --k 5000 --length 500000
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "common/traces.hpp"

namespace {

constexpr const char* kUsage =
    "usage: trace_gen {zipf|scanzipf|shift|loop} [--s X] [--n N] [--length N] [--seed N]\n"
    "                 [--scan-every N] [--scan-len N]   (scanzipf)\n"
    "                 [--phase-len N] [--drift N]       (shift; defaults s 0.8, n 20000, seed 3)\n"
    "                 [--k N]                           (loop, required)\n"
    "                 [-o FILE]                         (default: stdout)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  try {
    std::string out_path;
    const streamcache::bench::TraceSpec spec = streamcache::bench::parse_trace_spec(args, &out_path);
    std::FILE* out = out_path == "-" ? stdout : std::fopen(out_path.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "trace_gen: cannot open %s\n", out_path.c_str());
      return 1;
    }
    // A 1 MiB stdio buffer (static: stdout keeps using it until exit): traces are millions of
    // short lines.
    static char buffer[1 << 20];
    std::setvbuf(out, buffer, _IOFBF, sizeof buffer);
    streamcache::bench::for_each_trace_key(spec, [out](uint64_t key) {
      std::fprintf(out, "%llu\n", static_cast<unsigned long long>(key));
    });
    const bool ok = std::fflush(out) == 0 && !std::ferror(out);
    if (out != stdout) std::fclose(out);
    if (!ok) {
      std::fprintf(stderr, "trace_gen: write error\n");
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "trace_gen: %s\n%s", e.what(), kUsage);
    return 2;
  }
  return 0;
}
