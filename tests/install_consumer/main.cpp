// One small program that uses streamcache as a downstream user would, through the umbrella
// header only. It is built three ways by scripts/check-install: against an installed prefix
// with find_package, via add_subdirectory (tests/subdirectory_consumer) and with pkg-config
// flags. Each exercise_* function covers one component; add one per component as it lands
// and call it from main(). Exits non-zero on the first failed check.
#include <streamcache/streamcache.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer check failed: %s\n", what);
    std::exit(EXIT_FAILURE);
  }
}

// Clock and ManualClock are compiled into the library (src/clock.cpp), so this also proves
// the archive is found and linked.
void exercise_clock() {
  auto manual = std::make_shared<streamcache::ManualClock>();
  std::shared_ptr<streamcache::Clock> clock = manual;  // injectable as the base type
  const auto t0 = clock->now();
  manual->advance(std::chrono::seconds(15));
  check(clock->now() - t0 == std::chrono::seconds(15), "ManualClock advances by exactly 15s");

  auto system = streamcache::Clock::system();
  check(system != nullptr && system == streamcache::Clock::system(), "Clock::system() is shared");
}

streamcache::Generator<int> countdown(int from) {
  for (int i = from; i > 0; --i) co_yield i;
}

void exercise_generator() {
  int sum = 0;
  for (int v : countdown(4)) sum += v;
  check(sum == 4 + 3 + 2 + 1, "Generator yields 4, 3, 2, 1");
}

}  // namespace

int main() {
  exercise_clock();
  exercise_generator();
  std::puts("streamcache consumer: ok");
  return EXIT_SUCCESS;
}
