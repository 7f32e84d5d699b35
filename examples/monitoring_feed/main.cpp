// monitoring_feed: a live metrics dashboard over a StreamingMap (scripts/demo runs it).
//
// One agent thread per host publishes metric updates ("web-1/cpu%" -> 42.0) into a
// StreamingMap<std::string, double> with a TTL. A dashboard joins late: its stream first
// delivers the history (each key's newest value at the stream's cutoff, then kSnapshotEnd),
// then every later update, and the table is redrawn in place. A second subscriber stalls
// now and then: the ring (1024 events, under 0.2 s of traffic) overwrites what it has not
// read, and its stream recovers from the map (kResync + kRemove, or kReset + the state),
// each recovery ending with a kSnapshotEnd (mark_recovery_end).
// One host stops reporting at 30% of the run; its metrics expire and, with
// publish_expirations, reach both subscribers as kRemove. At the end each subscriber's
// table must equal the map, value pointer for value pointer, or the demo exits 1.
#include <absl/container/flat_hash_map.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_replace.h>
#include <absl/synchronization/mutex.h>
#include <streamcache/streamcache.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using MetricMap = streamcache::StreamingMap<std::string, double>;
using MetricEvent = streamcache::Event<std::string, double>;
using streamcache::EventKind;

struct MetricSpec {
  const char* name;    // the key's suffix and the column title
  double base, swing;  // values wander around base by up to +-swing
};
constexpr std::array<const char*, 4> kHosts = {"web-1", "web-2", "db-1", "cache-1"};
constexpr std::array<MetricSpec, 3> kMetrics = {{{"cpu%", 40, 25}, {"mem%", 60, 10}, {"req/s", 1200, 400}}};
constexpr size_t kQuietHost = 2;        // db-1's agent hangs at 30% of the run...
constexpr auto kTtl = 1s;               // ...and its metrics expire this long after
constexpr int kUpdatesPerTick = 15;     // per agent and kTick: 1500/s each, 6000/s in all
constexpr auto kTick = 10ms;
constexpr size_t kRingCapacity = 1024;  // under 0.2 s of traffic, so a 1.5 s stall lags
constexpr std::chrono::milliseconds kFirstStall = 300ms, kStall = 1500ms, kStallEvery = 3s;
// Written once after the agents stop. Its event reaches every subscriber whatever the path
// (live, kResync, or the relist after kReset), so having seen it means having everything;
// a removal as the last mutation would not do: a relist after kReset omits removed keys.
constexpr const char* kEndKey = "feed/end";
constexpr const char* kUsage =
    "usage: monitoring_feed [--seconds N] [--help]\n"
    "  --seconds N  run for N seconds (1 to 3600, default 10), then print a summary\n";

// Sleeps until `t`, or less if `stop` is requested, so that the run ends on time.
void pause_until(SteadyClock::time_point t, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_until(lock, stop, t, [] { return false; });
}

std::string key_of(size_t host, const MetricSpec& m) { return absl::StrCat(kHosts[host], "/", m.name); }

// A host's agent: a burst of updates every tick, each value on a slow wave plus noise.
void run_agent(std::stop_token stop, MetricMap& map, size_t host, SteadyClock::time_point hangs_at) {
  std::mt19937 rng(static_cast<unsigned>(host));
  std::normal_distribution<double> noise(0.0, 0.03);
  const auto start = SteadyClock::now();
  for (auto tick = start; !stop.stop_requested() && tick < hangs_at; tick += kTick) {
    const double wave = std::sin(0.8 * std::chrono::duration<double>(tick - start).count() + static_cast<double>(host));
    for (int i = 0; i < kUpdatesPerTick; ++i) {
      const MetricSpec& m = kMetrics[static_cast<size_t>(i) % kMetrics.size()];
      map.insert(key_of(host, m), m.base + m.swing * (wave + noise(rng)));
    }
    pause_until(tick + kTick, stop);
  }
}

struct Counts {
  uint64_t delivered = 0, removed = 0, resynced = 0, resets = 0, episodes = 0;
  uint64_t position = 0;  // the highest sequence applied (a kReset's is no mutation)
};

// A subscriber's table, rebuilt from its stream by its thread, and its counters; the
// renderer and the final check read them, hence the mutex.
class Subscriber {
 public:
  explicit Subscriber(const char* name) : name_(name) {}

  void apply(std::span<const MetricEvent> events) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const MetricEvent& e : events) {
      if (e.kind == EventKind::kSnapshotEnd) {
        // Both subscribers use stream(): the first ends the history, each later one a
        // recovery (mark_recovery_end).
        if (std::exchange(history_done_, true)) ++counts_.episodes;
        counts_.position = std::max(counts_.position, e.seq);
        continue;
      }
      ++counts_.delivered;
      counts_.removed += e.kind == EventKind::kRemove;
      counts_.resynced += e.kind == EventKind::kResync;
      if (e.kind == EventKind::kReset) {  // the removal log no longer reaches back: relist
        ++counts_.resets;
        table_.clear();
        continue;
      }
      table_[e.key] = e.value;  // null for kRemove: a tombstone, shown as "expired"
      counts_.position = std::max(counts_.position, e.seq);
      saw_end_ = saw_end_ || e.key == kEndKey;
    }
  }

  // Hosts by metrics: "-" never seen, "expired" removed by the TTL.
  std::string table() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::string out = absl::StrFormat("%-10s", "host");
    for (const MetricSpec& m : kMetrics) absl::StrAppendFormat(&out, "%10s", m.name);
    for (size_t h = 0; h < kHosts.size(); ++h) {
      absl::StrAppendFormat(&out, "\n%-10s", kHosts[h]);
      for (const MetricSpec& m : kMetrics) {
        const auto it = table_.find(key_of(h, m));
        if (it == table_.end()) absl::StrAppend(&out, "         -");
        else if (it->second == nullptr) absl::StrAppend(&out, "   expired");
        else absl::StrAppendFormat(&out, "%10.1f", *it->second);
      }
    }
    return out + "\n";
  }

  std::string line(uint64_t last_seq) const {
    const Counts c = counts();
    return absl::StrFormat("%-9s delivered %7d  lag %5d  removals %2d  resyncs %d (%d kResync, %d kReset)", name_,
                           c.delivered, last_seq - std::min(last_seq, c.position), c.removed, c.episodes, c.resynced,
                           c.resets);
  }

  // True once the end marker arrived, false if it did not within `timeout`.
  bool wait_for_end(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    hurry_.request_stop();  // cut a stall short
    const bool arrived = mu_.LockWhenWithTimeout(absl::Condition(&saw_end_), timeout);
    mu_.Unlock();
    return arrived;
  }

  // The final check: the table is the map, down to the value objects (events share them).
  bool matches(MetricMap& map) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    bool same = true;
    for (const auto& [key, value] : table_) same = same && map.get(key) == value;
    for (size_t h = 0; h < kHosts.size(); ++h) {
      for (const MetricSpec& m : kMetrics) same = same && (table_.contains(key_of(h, m)) || !map.get(key_of(h, m)));
    }
    return same;
  }

  Counts counts() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return counts_;
  }
  const char* name() const { return name_; }
  std::stop_token hurry() const { return hurry_.get_token(); }

 private:
  const char* const name_;
  std::stop_source hurry_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const double>> table_ ABSL_GUARDED_BY(mu_);
  Counts counts_ ABSL_GUARDED_BY(mu_);
  bool history_done_ ABSL_GUARDED_BY(mu_) = false;
  bool saw_end_ ABSL_GUARDED_BY(mu_) = false;
};

// The late joiner keeps up (whole batches, one lock each) and prints its history first.
void run_dashboard(std::stop_token stop, MetricMap& map, Subscriber& sub, std::latch& history_shown) {
  bool in_history = true;  // later kSnapshotEnd events end recoveries (mark_recovery_end)
  for (std::span<const MetricEvent> batch : map.stream_batches(512, stop)) {
    for (const MetricEvent& e : batch) {
      if (e.kind == EventKind::kSnapshot) absl::PrintF("  seq %7d  %-14s %8.1f\n", e.seq, e.key, *e.value);
      if (e.kind == EventKind::kSnapshotEnd && std::exchange(in_history, false)) {
        absl::PrintF("kSnapshotEnd: the history is whole up to the cutoff, seq %d; live updates follow\n\n", e.seq);
        history_shown.count_down();
      }
    }
    sub.apply(batch);
  }
}

// Keeps up at ~12k events/s, but stalls for kStall every kStallEvery (as if blocked on a
// disk), falls more than the ring behind, and its stream recovers from the map.
void run_slow(std::stop_token stop, MetricMap& map, Subscriber& sub) {
  auto next_stall = SteadyClock::now() + kFirstStall;
  uint64_t n = 0;
  for (const MetricEvent& e : map.stream(stop)) {
    sub.apply({&e, 1});
    if (++n % 64 == 0) pause_until(SteadyClock::now() + 5ms, sub.hurry());
    if (SteadyClock::now() >= next_stall) {
      pause_until(SteadyClock::now() + kStall, sub.hurry());
      next_stall = SteadyClock::now() + kStallEvery - kStall;
    }
  }
}

[[noreturn]] void usage_error(const std::string& message) {
  absl::FPrintF(stderr, "monitoring_feed: %s\n%s", message, kUsage);
  std::exit(2);
}

int parse_seconds(int argc, char** argv) {
  int seconds = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string value;
    if (arg == "--help" || arg == "-h") {
      absl::PrintF("%s", kUsage);
      std::exit(0);
    }
    if (arg.starts_with("--seconds=")) value = arg.substr(10);
    else if (arg == "--seconds" && i + 1 < argc) value = argv[++i];
    else usage_error(absl::StrCat("unknown option or missing value: '", arg, "'"));
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || end != value.data() + value.size() || seconds < 1 || seconds > 3600) {
      usage_error(absl::StrCat("--seconds expects a whole number from 1 to 3600, got '", value, "'"));
    }
  }
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const int seconds = parse_seconds(argc, argv);
  const bool tty = isatty(STDOUT_FILENO) != 0;
  const auto start = SteadyClock::now(), end = start + std::chrono::seconds(seconds);
  const auto elapsed = [start] { return std::chrono::duration<double>(SteadyClock::now() - start).count(); };
  absl::PrintF("monitoring feed: %d hosts x %d metrics, one agent per host at %d updates/s, TTL %ds, "
               "ring of %d, for %d s\n", kHosts.size(), kMetrics.size(), kUpdatesPerTick * (1s / kTick),
               kTtl.count(), kRingCapacity, seconds);

  streamcache::StreamingMapOptions options;
  options.time_to_live = kTtl;
  options.publish_expirations = true;  // expired metrics reach subscribers as kRemove
  options.ring_capacity = kRingCapacity;
  options.mark_snapshot_end = true;
  options.mark_recovery_end = true;  // and one after each recovery from lag
  MetricMap map(options);
  Subscriber dashboard("dashboard"), slow("slow");
  std::jthread slow_thread(run_slow, std::ref(map), std::ref(slow));
  std::vector<std::jthread> agents;
  for (size_t h = 0; h < kHosts.size(); ++h) {
    agents.emplace_back(run_agent, std::ref(map), h,
                        h == kQuietHost ? start + (end - start) * 3 / 10 : SteadyClock::time_point::max());
  }

  std::this_thread::sleep_until(start + std::min<SteadyClock::duration>(1s, (end - start) / 5));  // join late
  absl::PrintF("\ndashboard joins at t=%.1fs; the history its stream delivered (kSnapshot):\n", elapsed());
  std::latch history_shown(1);
  std::jthread dashboard_thread(run_dashboard, std::ref(map), std::ref(dashboard), std::ref(history_shown));
  history_shown.wait();
  // A terminal gets the frame redrawn in place; anything else plain lines.
  int frame_lines = 0;
  uint64_t last_published = 0;
  double last_t = 0, rate = 0;
  for (auto next = SteadyClock::now(); SteadyClock::now() < end;) {
    next = std::min(next + (tty ? 250ms : 1s), end);
    std::this_thread::sleep_until(next);
    map.run_pending_tasks();  // publish due expirations now
    const uint64_t published = map.last_seq();
    const double t = elapsed();
    if (t - last_t >= 0.2) {  // a shorter (last) window is too noisy
      rate = static_cast<double>(published - std::exchange(last_published, published)) / (t - std::exchange(last_t, t));
    }
    std::string frame = absl::StrFormat("t=%4.1fs  %5.0f events/s  published %d\n%s\n%s\n", t, rate, published,
                                        dashboard.line(published), slow.line(published));
    if (tty) {
      frame = dashboard.table() + frame;
      // Back to the previous frame's first line, then overwrite each line and clear what is
      // left of it (\x1b[K): the table updates in place, without clearing the screen.
      if (frame_lines > 0) absl::PrintF("\x1b[%dF", frame_lines);
      frame_lines = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
      frame = absl::StrReplaceAll(frame, {{"\n", "\x1b[K\n"}});
    }
    absl::PrintF("%s", frame);
    std::fflush(stdout);
  }
  agents.clear();           // jthread: request_stop() and join()
  map.run_pending_tasks();  // due expirations go before the end marker
  map.insert(kEndKey, 0);

  bool ok = true;
  for (auto [sub, thread] : {std::pair{&dashboard, &dashboard_thread}, std::pair{&slow, &slow_thread}}) {
    const bool complete = sub->wait_for_end(absl::Seconds(30));
    thread->request_stop();  // the stream ends at its stop token
    thread->join();
    if (!complete) absl::PrintF("%s: the end marker never arrived\n", sub->name());
    ok = ok && complete;
  }

  const uint64_t published = map.last_seq();
  absl::PrintF("\nsummary after %.1f s: %d events published (%.0f/s; expirations and the end marker included)\n%s",
               elapsed(), published, static_cast<double>(published) / elapsed(), dashboard.table());
  for (const Subscriber* s : {&dashboard, &slow}) {
    const bool same = s->matches(map);
    absl::PrintF("%s; table %s the map\n", s->line(published), same ? "equals" : "DIFFERS FROM");
    ok = ok && same;
  }
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
