// A cache with a time-to-live and a loader. Time is a ManualClock, so the run is
// deterministic: entries expire exactly when the clock says so, not when a sleep ends.
#include <streamcache/streamcache.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace {

// assert() vanishes under NDEBUG (Release); an example that is also a test must still check.
void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) std::exit(EXIT_FAILURE);
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  auto clock = std::make_shared<streamcache::ManualClock>();
  auto cache = streamcache::Cache<std::string, std::string>::builder()
                   .max_capacity(1000)
                   .time_to_live(10s)
                   .clock(clock)
                   .build();

  // The loader stands in for a slow lookup (a database, a DNS query...).
  int loads = 0;
  auto load_user = [&loads] { return "Ada Lovelace (load #" + std::to_string(++loads) + ")"; };

  check(cache.get_with("user:42", load_user) == "Ada Lovelace (load #1)", "a miss runs the loader");
  check(cache.get_with("user:42", load_user) == "Ada Lovelace (load #1)", "a hit does not");
  check(loads == 1, "the loader ran once");

  clock->advance(9s);  // 9 s: still inside the TTL.
  check(cache.get("user:42").has_value(), "at 9 s the entry is still there");

  clock->advance(1s);  // 10 s: the TTL counts from the insert, and reads do not extend it.
  check(!cache.get("user:42").has_value(), "at 10 s the entry has expired");
  check(cache.get_with("user:42", load_user) == "Ada Lovelace (load #2)", "after expiry it reloads");

  cache.run_pending_tasks();  // apply buffered maintenance so the counters are final
  const streamcache::CacheStats stats = cache.stats();
  check(stats.hits == 2 && stats.misses == 3, "2 hits, 3 misses");
  check(stats.load_successes == 2 && stats.evictions_expired == 1, "2 loads, 1 expiration");
  std::printf("hit rate %.2f\n", stats.hit_rate());
  return EXIT_SUCCESS;
}
