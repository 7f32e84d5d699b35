// Synthetic cache traces: a C++ port of ../shared/traces/gen_trace.py that produces the same
// keys, bit for bit, for the same arguments (the hit-ratio anchors were measured on its output,
// and the project must be able to regenerate them without Python or ../shared).
//
//   zipf      Zipf(s) over n ranks; rank -> key through zipf_key() (a bijection when n is a
//             power of two, else rank + 1).
//   scanzipf  the zipf stream with a one-time sequential scan of `scan_len` brand-new keys
//             (above the zipf key space) every `scan_every` zipf accesses.
//   shift     Zipf(s) over n keys whose base moves by `drift` every `phase_len` accesses.
//   loop      1, 2, ..., k, 1, 2, ...
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/zipf.hpp"

namespace streamcache::bench {

/// The arguments of one gen_trace.py invocation. Fields a pattern does not use are ignored.
struct TraceSpec {
  std::string pattern = "zipf";  // zipf | scanzipf | shift | loop
  double s = 0.99;
  uint64_t n = uint64_t{1} << 20;
  uint64_t length = 1'000'000;
  uint64_t seed = 1;
  uint64_t scan_every = 50'000;  // scanzipf
  uint64_t scan_len = 20'000;    // scanzipf
  uint64_t phase_len = 20'000;   // shift
  uint64_t drift = 5'000;        // shift
  uint64_t k = 0;                // loop (required, > 0)
};

/// gen_trace.py's defaults for `pattern` (shift has its own s, n and seed).
inline TraceSpec default_trace_spec(const std::string& pattern) {
  TraceSpec spec;
  spec.pattern = pattern;
  if (pattern == "shift") {
    spec.s = 0.8;
    spec.n = 20'000;
    spec.seed = 3;
  }
  return spec;
}

namespace trace_internal {

inline uint64_t parse_count(const std::string& option, const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("trace option " + option + ": not a non-negative integer: '" +
                                text + "'");
  }
  errno = 0;
  const unsigned long long value = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) throw std::invalid_argument("trace option " + option + ": out of range");
  return value;
}

inline double parse_real(const std::string& option, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw std::invalid_argument("trace option " + option + ": not a number: '" + text + "'");
  }
  return value;
}

}  // namespace trace_internal

/// Parses gen_trace.py's command line: `PATTERN [--s X] [--n N] [--length N] [--seed N]
/// [--scan-every N] [--scan-len N] [--phase-len N] [--drift N] [--k N] [-o FILE]`, also in the
/// `--opt=value` form. `out`, when given, receives the -o/--out argument ("-" if absent).
/// Throws std::invalid_argument naming the offending option.
inline TraceSpec parse_trace_spec(const std::vector<std::string>& args, std::string* out = nullptr) {
  if (args.empty()) throw std::invalid_argument("trace spec: missing pattern (zipf, scanzipf, shift, loop)");
  const std::string& pattern = args[0];
  if (pattern != "zipf" && pattern != "scanzipf" && pattern != "shift" && pattern != "loop") {
    throw std::invalid_argument("trace spec: unknown pattern '" + pattern + "'");
  }
  TraceSpec spec = default_trace_spec(pattern);
  // assign(1, '-'), not = "-": g++ 12 -O3 reports a bogus -Wrestrict for the latter.
  if (out != nullptr) out->assign(1, '-');
  for (size_t i = 1; i < args.size(); ++i) {
    std::string option = args[i];
    std::string value;
    if (const size_t eq = option.find('='); eq != std::string::npos && option.rfind("--", 0) == 0) {
      value = option.substr(eq + 1);
      option.resize(eq);
    } else {
      if (i + 1 >= args.size()) throw std::invalid_argument("trace option " + option + ": missing value");
      value = args[++i];
    }
    // The options each pattern accepts, as in gen_trace.py's subparsers.
    using trace_internal::parse_count;
    if (option == "--s" && pattern != "loop") {
      spec.s = trace_internal::parse_real(option, value);
    } else if (option == "--n" && pattern != "loop") {
      spec.n = parse_count(option, value);
    } else if (option == "--length") {
      spec.length = parse_count(option, value);
    } else if (option == "--seed") {
      spec.seed = parse_count(option, value);
    } else if ((option == "-o" || option == "--out")) {
      if (out != nullptr) *out = value;
    } else if (option == "--scan-every" && pattern == "scanzipf") {
      spec.scan_every = parse_count(option, value);
    } else if (option == "--scan-len" && pattern == "scanzipf") {
      spec.scan_len = parse_count(option, value);
    } else if (option == "--phase-len" && pattern == "shift") {
      spec.phase_len = parse_count(option, value);
    } else if (option == "--drift" && pattern == "shift") {
      spec.drift = parse_count(option, value);
    } else if (option == "--k" && pattern == "loop") {
      spec.k = parse_count(option, value);
    } else {
      throw std::invalid_argument("trace option " + option + ": not an option of pattern " + pattern);
    }
  }
  if (pattern == "loop" && spec.k == 0) throw std::invalid_argument("trace option --k: required, > 0");
  if (pattern != "loop" && spec.n == 0) throw std::invalid_argument("trace option --n: must be > 0");
  if (pattern == "scanzipf" && spec.scan_every == 0 && spec.scan_len == 0) {
    throw std::invalid_argument("trace option --scan-len: must be > 0 when --scan-every is 0");
  }
  if (pattern == "shift" && spec.phase_len == 0) {
    throw std::invalid_argument("trace option --phase-len: must be > 0");
  }
  return spec;
}

/// Splits a one-line spec such as "zipf --s 0.99 --n 1048576" on whitespace, then parses it.
inline TraceSpec parse_trace_spec(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> args;
  for (std::string word; in >> word;) args.push_back(word);
  return parse_trace_spec(args);
}

/// Calls `sink(key)` for every key of the trace, in order (no buffering: traces of any length).
template <class Sink>
void for_each_trace_key(const TraceSpec& spec, Sink&& sink) {
  if (spec.pattern == "loop") {
    if (spec.k == 0) throw std::invalid_argument("trace option --k: required, > 0");
    for (uint64_t i = 0; i < spec.length; ++i) sink(1 + i % spec.k);
    return;
  }
  if (spec.n == 0) throw std::invalid_argument("trace option --n: must be > 0");
  const ZipfSampler zipf(spec.n, spec.s);
  SplitMix64 rng(spec.seed);
  if (spec.pattern == "zipf") {
    for (uint64_t i = 0; i < spec.length; ++i) sink(zipf_key(zipf.rank(rng), spec.n));
  } else if (spec.pattern == "scanzipf") {
    if (spec.scan_every == 0 && spec.scan_len == 0) {
      throw std::invalid_argument("trace option --scan-len: must be > 0 when --scan-every is 0");
    }
    uint64_t scan_key = spec.n + 1;  // above the zipf key space: each used once
    uint64_t emitted = 0;
    uint64_t since_scan = 0;
    while (emitted < spec.length) {
      if (since_scan >= spec.scan_every) {
        const uint64_t scan = std::min(spec.scan_len, spec.length - emitted);
        for (uint64_t j = 0; j < scan; ++j) sink(scan_key++);
        emitted += scan;
        since_scan = 0;
        continue;
      }
      sink(zipf_key(zipf.rank(rng), spec.n));
      ++emitted;
      ++since_scan;
    }
  } else if (spec.pattern == "shift") {
    if (spec.phase_len == 0) throw std::invalid_argument("trace option --phase-len: must be > 0");
    for (uint64_t i = 0; i < spec.length; ++i) {
      const uint64_t base = (i / spec.phase_len) * spec.drift;
      sink(1 + base + zipf.rank(rng));  // shift uses raw ranks, not zipf_key()
    }
  } else {
    throw std::invalid_argument("trace spec: unknown pattern '" + spec.pattern + "'");
  }
}

inline std::vector<uint64_t> generate_trace(const TraceSpec& spec) {
  std::vector<uint64_t> keys;
  keys.reserve(spec.length);
  for_each_trace_key(spec, [&keys](uint64_t key) { keys.push_back(key); });
  return keys;
}

inline std::vector<uint64_t> generate_trace(const std::string& spec_line) {
  return generate_trace(parse_trace_spec(spec_line));
}

}  // namespace streamcache::bench
