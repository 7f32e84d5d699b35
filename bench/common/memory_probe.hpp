// What the memory tools share: reading RSS, running a measurement in a clean child process,
// and parsing the ENTRIES argument.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

namespace streamcache::bench {

/// Resident bytes of this process (second field of /proc/self/statm, in pages), read
/// without allocating, so that it does not disturb malloc counters being sampled.
inline int64_t resident_bytes() {
  const int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/statm");
  std::array<char, 128> buf{};
  const ssize_t n = read(fd, buf.data(), buf.size() - 1);
  close(fd);
  unsigned long long size_pages = 0;
  unsigned long long resident_pages = 0;
  if (n <= 0 || std::sscanf(buf.data(), "%llu %llu", &size_pages, &resident_pages) != 2) {
    throw std::runtime_error("cannot read /proc/self/statm");
  }
  return static_cast<int64_t>(resident_pages) * sysconf(_SC_PAGESIZE);
}

/// Runs `body` (returning true on success) in a fresh child process, which starts from the
/// same clean heap as every other measurement (glibc keeps freed memory in its arenas, so
/// one measurement's leftovers would flatter the next). False if the child failed.
template <class Body>
bool run_in_child(const char* label, Body&& body) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int code = 0;
    try {
      code = body() ? 0 : 3;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", label, e.what());
      code = 1;
    }
    std::fflush(stdout);
    std::_Exit(code);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) throw std::runtime_error("waitpid failed");
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// The optional ENTRIES argument of `tool` (default 1000000), in [min, max].
inline uint64_t parse_entries(int argc, char** argv, const char* tool, uint64_t min, uint64_t max) {
  if (argc == 1) return 1000000;
  if (argc > 2) throw std::invalid_argument(std::string("usage: ") + tool + " [ENTRIES]");
  const std::string arg = argv[1];
  size_t used = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(arg, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != arg.size() || n < min || n > max) {
    throw std::invalid_argument("ENTRIES must be an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got '" + arg + "'");
  }
  return n;
}

}  // namespace streamcache::bench
