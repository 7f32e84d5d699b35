// broadcast_interleaved: our ring (kBlock) against a baseline, taking turns, many times,
// on broadcast_benchmark's workload.
//
//   broadcast_interleaved [ROUNDS [P:S[:BASELINE] ...]]     (defaults 15, 2:2)
//
// BASELINE is `mutex` (the mutex + condvar + deque broadcast; the default) or `spsc` (the
// Boost spsc_queue fan-out).
//
// Why, beside broadcast_benchmark: with more threads than the 2 vCPUs this project is
// measured on, a 2 -> 2 run mostly measures where the scheduler put the four threads, and
// that changes from one run to the next. Minutes apart, the same binary delivered 15-72
// M msgs/s with `recv` (and the mutex baseline 3.6-7.6), so one run of broadcast_benchmark
// reports whichever state it drew, and its ring / mutex ratio moved between 3x and 13x.
// The single-producer cases move too, with the machine's state: minutes apart, the spsc
// fan-out's 1 -> 1 with batches delivered 96 and 296 M msgs/s (docs/notes/broadcast.md,
// session 12).
// This tool measures the spread instead: for each case, with `recv` and with
// `recv_batch(64)`, ROUNDS rounds of one run of each (common/broadcast_baselines.hpp's
// run_once, exactly what the benchmark times), the order swapped every round so that a
// drift favours neither. It prints the medians of both rates and the median, quartiles
// and range of the per-round ratio.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/broadcast_baselines.hpp"
#include "common/summary.hpp"

namespace {

using namespace streamcache::bench::broadcast;
using streamcache::bench::median;
using streamcache::bench::quantile;

enum class Baseline { kMutex, kSpsc };

struct Case {
  int producers;
  int subscribers;
  Baseline baseline;
};

const char* name(Baseline b) { return b == Baseline::kMutex ? "mutex" : "spsc"; }

template <class Impl>
double rate_mmsgs(const Case& c, bool batch) {
  const RunResult run = run_once<Impl>(c.producers, c.subscribers, batch, /*publish_batches=*/false);
  if (run.checksum == ~uint64_t{0}) std::puts("");  // keeps the reads observable
  return static_cast<double>(run.delivered) / run.seconds / 1e6;
}

template <class Baseline>
void measure(const Case& c, bool batch, int rounds) {
  std::vector<double> ring, base, ratio;
  for (int r = 0; r < rounds; ++r) {
    double ours = 0;
    double theirs = 0;
    if (r % 2 == 0) {
      ours = rate_mmsgs<RingBlock>(c, batch);
      theirs = rate_mmsgs<Baseline>(c, batch);
    } else {
      theirs = rate_mmsgs<Baseline>(c, batch);
      ours = rate_mmsgs<RingBlock>(c, batch);
    }
    ring.push_back(ours);
    base.push_back(theirs);
    ratio.push_back(ours / theirs);
  }
  std::printf("%d -> %d  %-5s  %-8s  %8.2f  %9.2f  %6.2fx  %5.2f-%5.2f  %5.2f-%5.2f\n", c.producers,
              c.subscribers, batch ? "batch" : "recv", name(c.baseline), median(ring), median(base), median(ratio),
              quantile(ratio, 0.25), quantile(ratio, 0.75), quantile(ratio, 0.0), quantile(ratio, 1.0));
  std::fflush(stdout);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "broadcast_interleaved: %s\nusage: broadcast_interleaved [ROUNDS [P:S[:mutex|spsc] ...]]\n",
               why);
  std::exit(2);
}

Case parse_case(const std::string& arg) {
  const size_t colon = arg.find(':');
  if (colon == std::string::npos) usage(("a case is P:S[:BASELINE], got '" + arg + "'").c_str());
  const size_t second = arg.find(':', colon + 1);
  const int p = std::atoi(arg.substr(0, colon).c_str());
  const int s = std::atoi(arg.substr(colon + 1, second == std::string::npos ? std::string::npos : second - colon - 1).c_str());
  if (p <= 0 || s <= 0) usage(("P and S must be positive integers, got '" + arg + "'").c_str());
  Baseline baseline = Baseline::kMutex;
  if (second != std::string::npos) {
    const std::string which = arg.substr(second + 1);
    if (which == "spsc") {
      baseline = Baseline::kSpsc;
    } else if (which != "mutex") {
      usage(("BASELINE is mutex or spsc, got '" + which + "'").c_str());
    }
  }
  return {p, s, baseline};
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  if (rounds <= 0) usage("ROUNDS must be a positive integer");
  std::vector<Case> cases;
  for (int i = 2; i < argc; ++i) cases.push_back(parse_case(argv[i]));
  if (cases.empty()) cases.push_back({2, 2, Baseline::kMutex});

  std::printf("RingBlock against a baseline (mutex: MutexDeque, spsc: SpscFanout), %d rounds of one run each "
              "(order swapped every round), M msgs/s delivered\n", rounds);
  std::printf("case    mode   baseline      ring   baseline   ratio  quartiles    range\n");
  for (const Case& c : cases) {
    for (const bool batch : {false, true}) {
      if (c.baseline == Baseline::kMutex) {
        measure<MutexDeque>(c, batch, rounds);
      } else {
        measure<SpscFanout>(c, batch, rounds);
      }
    }
  }
  return 0;
}
