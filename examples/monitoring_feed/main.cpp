// monitoring_feed: a live metrics dashboard over streamcache (scripts/demo runs it).
//
// One agent thread per host publishes metric updates ("web-1/cpu%" -> 42.0) into a
// MetricFeed: a Cache with a TTL keeps the latest value of each key, a Broadcast ring
// carries every update live. A dashboard joins late, starts from the cache's contents and
// applies the live updates; a second subscriber stalls now and then, lags (the ring
// overwrites what it has not read and says exactly how much) and catches up. One host
// stops reporting at 40% of the run, and its metrics expire from the cache.
#include <absl/container/flat_hash_map.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_replace.h>
#include <streamcache/streamcache.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct MetricSpec {
  const char* name;    // the key's suffix and the column title
  double base, swing;  // values wander around base by up to +-swing
};
constexpr std::array<const char*, 4> kHosts = {"web-1", "web-2", "db-1", "cache-1"};
constexpr std::array<MetricSpec, 3> kMetrics = {{{"cpu%", 40, 25}, {"mem%", 60, 10}, {"req/s", 1200, 400}}};
constexpr size_t kQuietHost = 2;        // db-1's agent hangs at 40% of the run...
constexpr auto kTtl = 2s;               // ...and its metrics expire this long after
constexpr int kUpdatesPerTick = 15;     // per agent and kTick: 1500/s each, 6000/s in all
constexpr auto kTick = 10ms;
constexpr size_t kRingCapacity = 4096;  // under 1 s of traffic, so a 1.5 s stall lags
constexpr std::chrono::milliseconds kFirstStall = 300ms, kStall = 1500ms, kStallEvery = 3s;
constexpr const char* kUsage =
    "usage: monitoring_feed [--seconds N] [--help]\n"
    "  --seconds N  run for N seconds (1 to 3600, default 10), then print a summary\n";

struct MetricUpdate {
  std::string key;  // "host/metric"
  double value;
};

// Where updates go: the Cache holds the latest value per key and forgets keys that stop
// reporting; the Broadcast carries every update to live subscribers. That pair is what
// StreamingMap composes: when it lands, this class becomes a StreamingMap<std::string,
// double>, and subscribe() + for_each_latest() become one stream() (history, then live),
// whose cutoff also removes the join overlap noted in Dashboard's constructor.
class MetricFeed {
 public:
  // Each key has one writer (its host's agent), so cache and ring agree on its order.
  void publish(std::string key, double value) {
    latest_.insert(key, value);
    live_.publish({std::move(key), value});
  }
  streamcache::Subscriber<MetricUpdate> subscribe() { return live_.subscribe(); }
  template <class F>
  void for_each_latest(F&& f) const { latest_.for_each(std::forward<F>(f)); }
  bool has(const std::string& key) const { return latest_.contains_key(key); }
  uint64_t published() const { return live_.published_cursor(); }
  void close() { live_.close(); }
  std::string cache_summary() {
    latest_.run_pending_tasks();  // apply due expirations so the counts are current
    return absl::StrFormat("cache: %d keys, %d expired", latest_.entry_count(), latest_.stats().evictions_expired);
  }

 private:
  streamcache::Cache<std::string, double> latest_ =
      streamcache::Cache<std::string, double>::builder().time_to_live(kTtl).build();
  streamcache::Broadcast<MetricUpdate> live_{streamcache::BroadcastOptions{
      kRingCapacity, streamcache::Overflow::kOverwrite, streamcache::WaitStrategy::kBlocking}};
};

// One subscriber's progress: written by its own thread only, read by the renderer.
struct SubscriberStats {
  const char* name;
  uint64_t first_seq = 0;  // set before its thread starts
  std::atomic<uint64_t> delivered{0}, last_seq{0};
  // Lag events (high 16 bits) and messages missed (low 48) in one word, so that a reader
  // gets a consistent pair from one load and can log exact differences.
  std::atomic<uint64_t> lags{0};
  static constexpr int kEventShift = 48;

  // relaxed (set and get): display counters that publish no other data; the summary reads
  // them after join(), which orders everything. One writer, so no read-modify-write.
  static void set(std::atomic<uint64_t>& a, uint64_t v) { a.store(v, std::memory_order_relaxed); }
  static uint64_t get(const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); }
  static uint64_t events(uint64_t lags_word) { return lags_word >> kEventShift; }
  static uint64_t missed(uint64_t lags_word) { return lags_word & ((uint64_t{1} << kEventShift) - 1); }

  void received(uint64_t n, uint64_t up_to_seq) {
    set(delivered, get(delivered) + n);
    set(last_seq, up_to_seq);
  }
  void lagged(uint64_t n_missed, uint64_t resumes_at) {
    set(lags, get(lags) + (uint64_t{1} << kEventShift) + n_missed);
    set(last_seq, resumes_at - 1);
  }
  uint64_t missed_so_far() const { return missed(get(lags)); }
  // The exact-lag promise: every message published since joining was delivered or missed.
  bool accounts_for(uint64_t published) const { return get(delivered) + missed_so_far() == published - first_seq + 1; }
  // Saturating: `published` and last_seq are not read atomically together.
  uint64_t lag(uint64_t published) const { return std::max(published, get(last_seq)) - get(last_seq); }
  std::string line(uint64_t published) const {
    const uint64_t l = get(lags);
    return absl::StrFormat("%-9s delivered %7d  lag %5d  missed %6d in %d lag events", name, get(delivered),
                           lag(published), missed(l), events(l));
  }
  // What lagged since the previous call, exactly; empty when nothing did.
  std::string new_lags() {
    const uint64_t l = get(lags), before = std::exchange(lags_logged, l);
    if (l == before) return "";
    return absl::StrFormat("%s: kLagged %d time(s), missed exactly %d messages", name,
                           events(l) - events(before), missed(l) - missed(before));
  }
  uint64_t lags_logged = 0;  // the renderer's own
};

// Sleeps until `t`, or less if `stop` is requested, so that the run ends on time.
void pause_until(SteadyClock::time_point t, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_until(lock, stop, t, [] { return false; });
}

std::string key_of(size_t host, const MetricSpec& m) { return absl::StrCat(kHosts[host], "/", m.name); }

// A host's agent: a burst of updates every tick, each value on a slow wave plus noise.
void run_agent(std::stop_token stop, MetricFeed& feed, size_t host, SteadyClock::time_point hangs_at) {
  std::mt19937 rng(static_cast<unsigned>(host));
  std::normal_distribution<double> noise(0.0, 0.03);
  const auto start = SteadyClock::now();
  for (auto tick = start; !stop.stop_requested() && tick < hangs_at; tick += kTick) {
    const double wave = std::sin(0.8 * std::chrono::duration<double>(tick - start).count() + static_cast<double>(host));
    for (int i = 0; i < kUpdatesPerTick; ++i) {
      const MetricSpec& m = kMetrics[static_cast<size_t>(i) % kMetrics.size()];
      feed.publish(key_of(host, m), m.base + m.swing * (wave + noise(rng)));
    }
    pause_until(tick + kTick, stop);
  }
}

// Reads one message at a time, keeps up at ~12k/s, but stalls for kStall every kStallEvery
// (as if blocked on a disk): the ring overwrites what it has not read, and says how much.
// After kLagged it resumes at the oldest message held, the next one producers overwrite,
// so a second, small lag often follows before it pulls ahead.
void run_slow_subscriber(std::stop_token stop, streamcache::Subscriber<MetricUpdate> sub, SubscriberStats& stats) {
  auto next_stall = SteadyClock::now() + kFirstStall;
  for (uint64_t n = 1;; ++n) {
    const streamcache::Received<MetricUpdate> r = sub.recv();
    if (r.status == streamcache::RecvStatus::kClosed) return;
    if (r.status == streamcache::RecvStatus::kLagged) stats.lagged(r.missed, r.seq);
    if (r.status == streamcache::RecvStatus::kOk) stats.received(1, r.seq);
    if (n % 64 == 0) pause_until(SteadyClock::now() + 5ms, stop);
    if (SteadyClock::now() >= next_stall) {
      pause_until(SteadyClock::now() + kStall, stop);
      next_stall = SteadyClock::now() + kStallEvery - kStall;
    }
  }
}

// The late joiner: starts from the cache's contents, then applies live updates in batches.
class Dashboard {
 public:
  Dashboard(MetricFeed& feed, bool tty) : feed_(feed), tty_(tty), sub_(feed.subscribe()) {
    stats_.first_seq = sub_.next_seq();
    // Subscribed before reading the cache, so no update falls between the two. Updates
    // published in between are in both; replayed in order, each key still ends at its
    // newest value (a StreamingMap stream's cutoff makes that replay unnecessary).
    feed_.for_each_latest([this](const std::string& key, double value) { values_[key] = value; });
    absl::PrintF("\ndashboard joins at seq %d; its starting state, from the cache (%d keys):\n%s\n",
                 stats_.first_seq, values_.size(), table());
  }

  // Applies the next batch of updates; false once the feed is closed and drained.
  bool pump() {
    batch_.clear();
    if (sub_.recv_batch(batch_, 1024) == 0) return false;
    for (const MetricUpdate& u : batch_) values_[u.key] = u.value;
    // recv_batch reports lag through missed_total(); the batch starts where it resumed.
    if (const uint64_t missed = sub_.missed_total() - stats_.missed_so_far(); missed > 0) {
      stats_.lagged(missed, sub_.next_seq() - batch_.size());
    }
    stats_.received(batch_.size(), sub_.next_seq() - 1);
    return true;
  }

  // A terminal gets the table redrawn in place; anything else one plain line per call.
  void render(double elapsed, SubscriberStats& slow) {
    const uint64_t published = feed_.published();
    if (elapsed - last_elapsed_ >= 0.2) {  // a shorter window (the final frame) is too noisy
      rate_ = static_cast<double>(published - last_published_) / (elapsed - last_elapsed_);
      last_published_ = published;
      last_elapsed_ = elapsed;
    }
    const std::string status = absl::StrFormat("t=%4.1fs  %5.0f events/s  published %d  %s", elapsed, rate_,
                                               published, feed_.cache_summary());
    std::vector<std::string> lags;  // what lagged since the previous call
    for (SubscriberStats* s : {&stats_, &slow}) {
      if (std::string l = s->new_lags(); !l.empty()) lags.push_back(std::move(l));
    }
    if (!tty_) {
      absl::PrintF("%s  lag: %s %d, %s %d\n", status, stats_.name, stats_.lag(published), slow.name,
                   slow.lag(published));
      for (const std::string& l : lags) absl::PrintF("  %s\n", l);
      std::fflush(stdout);
      return;
    }
    if (!lags.empty()) latest_lag_ = absl::StrFormat("latest lag, at t=%.1fs: %s", elapsed, absl::StrJoin(lags, "; "));
    const std::string frame = absl::StrCat(table(), status, "\n", stats_.line(published), "\n",
                                           slow.line(published), "\n", latest_lag_, "\n");
    // Back to the previous frame's first line, then overwrite each line and clear what is
    // left of it (\x1b[K): the table updates in place, without clearing the screen.
    if (frame_lines_ > 0) absl::PrintF("\x1b[%dF", frame_lines_);
    frame_lines_ = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
    absl::PrintF("%s", absl::StrReplaceAll(frame, {{"\n", "\x1b[K\n"}}));
    std::fflush(stdout);
  }

  // Hosts by metrics; a key the cache no longer holds (its TTL passed) shows "expired".
  std::string table() const {
    std::string out = absl::StrFormat("%-10s", "host");
    for (const MetricSpec& m : kMetrics) absl::StrAppendFormat(&out, "%10s", m.name);
    for (size_t h = 0; h < kHosts.size(); ++h) {
      absl::StrAppendFormat(&out, "\n%-10s", kHosts[h]);
      for (const MetricSpec& m : kMetrics) {
        const std::string key = key_of(h, m);
        const auto it = values_.find(key);
        if (it == values_.end()) absl::StrAppend(&out, "         -");
        else if (!feed_.has(key)) absl::StrAppend(&out, "   expired");
        else absl::StrAppendFormat(&out, "%10.1f", it->second);
      }
    }
    return out + "\n";
  }
  const SubscriberStats& stats() const { return stats_; }

 private:
  MetricFeed& feed_;
  const bool tty_;
  streamcache::Subscriber<MetricUpdate> sub_;
  SubscriberStats stats_{"dashboard"};
  absl::flat_hash_map<std::string, double> values_;
  std::vector<MetricUpdate> batch_;
  uint64_t last_published_ = 0;
  double last_elapsed_ = 0, rate_ = 0;
  int frame_lines_ = 0;
  std::string latest_lag_ = "latest lag: none yet";
};

[[noreturn]] void usage_error(const std::string& message) {
  absl::FPrintF(stderr, "monitoring_feed: %s\n%s", message, kUsage);
  std::exit(2);
}

int parse_seconds(int argc, char** argv) {
  int seconds = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      absl::PrintF("%s", kUsage);
      std::exit(0);
    }
    std::string value;
    if (arg.starts_with("--seconds=")) {
      value = arg.substr(10);
    } else if (arg == "--seconds") {
      if (i + 1 == argc) usage_error("--seconds needs a value");
      value = argv[++i];
    } else {
      usage_error(absl::StrCat("unknown option '", arg, "'"));
    }
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

  MetricFeed feed;
  SubscriberStats slow{"slow"};
  std::jthread slow_thread;
  {
    auto sub = feed.subscribe();
    slow.first_seq = sub.next_seq();
    slow_thread = std::jthread(run_slow_subscriber, std::move(sub), std::ref(slow));
  }
  std::vector<std::jthread> agents;
  for (size_t h = 0; h < kHosts.size(); ++h) {
    agents.emplace_back(run_agent, std::ref(feed), h,
                        h == kQuietHost ? start + (end - start) * 2 / 5 : SteadyClock::time_point::max());
  }

  std::this_thread::sleep_until(start + std::min<SteadyClock::duration>(1s, (end - start) / 5));  // join late
  Dashboard dashboard(feed, tty);
  for (auto next_render = SteadyClock::now(); SteadyClock::now() < end && dashboard.pump();) {
    if (SteadyClock::now() < next_render) continue;
    dashboard.render(elapsed(), slow);
    next_render += tty ? 250ms : 1s;
  }
  agents.clear();  // jthread: request_stop() and join()
  feed.close();    // the subscribers drain what is left, then see the end
  while (dashboard.pump()) {
  }
  slow_thread.request_stop();  // cuts a stall short; the subscriber still drains
  slow_thread.join();
  dashboard.render(elapsed(), slow);

  const uint64_t published = feed.published();
  absl::PrintF("\nsummary after %.1f s: %d events published (%.0f/s), %s\n%s", elapsed(), published,
               static_cast<double>(published) / elapsed(), feed.cache_summary(), tty ? "" : dashboard.table());
  bool accounted = true;
  for (const SubscriberStats* s : {&dashboard.stats(), static_cast<const SubscriberStats*>(&slow)}) {
    const bool ok = s->accounts_for(published);
    absl::PrintF("%s; joined at seq %d: %s\n", s->line(published), s->first_seq,
                 ok ? "every message since accounted for" : "MISCOUNTED");
    accounted = accounted && ok;
  }
  return accounted ? EXIT_SUCCESS : EXIT_FAILURE;
}
