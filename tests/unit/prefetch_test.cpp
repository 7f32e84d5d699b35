// prefetch_for_write() issues PREFETCHW only where the CPU has it: the detection must agree
// with what the kernel reports, or the ring either loses its write prefetch (a 2x slower
// single-producer path) or executes an instruction the CPU may not have.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "streamcache/detail/prefetch.hpp"

namespace streamcache::detail {
namespace {

#if (defined(__x86_64__) || defined(__i386__)) && !defined(__PRFCHW__) && defined(__linux__)
// The flags line of the first processor in /proc/cpuinfo, as whole words.
bool kernel_reports_flag(const std::string& flag) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string word; words >> word;) {
      if (word == flag) return true;
    }
    return false;
  }
  ADD_FAILURE() << "no flags line in /proc/cpuinfo";
  return false;
}

TEST(PrefetchForWrite, DetectsPrefetchwExactlyWhenTheKernelReportsIt) {
  EXPECT_EQ(cpu_has_prefetchw(), kernel_reports_flag("3dnowprefetch"));
  EXPECT_EQ(kCpuHasPrefetchW, cpu_has_prefetchw()) << "the start-up reading differs from a fresh one";
}
#endif

TEST(PrefetchForWrite, IsOnlyAHint) {
  // A prefetch never changes memory, even of the line being written next to it.
  alignas(64) unsigned char line[128] = {};
  for (unsigned i = 0; i < sizeof line; ++i) line[i] = static_cast<unsigned char>(i);
  prefetch_for_write(line);
  prefetch_for_write(line + 127);
  for (unsigned i = 0; i < sizeof line; ++i) EXPECT_EQ(line[i], static_cast<unsigned char>(i));
}

}  // namespace
}  // namespace streamcache::detail
