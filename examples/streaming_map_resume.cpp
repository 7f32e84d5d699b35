// StreamingMap: history + live with stream_n, then resume with stream_from(last seq) from the ring or the map.
#include <streamcache/streamcache.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

using Kind = streamcache::EventKind;

struct Consumer {
  std::map<std::string, int> state;  // rebuilt from the events alone
  uint64_t last = 0;                 // the last sequence processed: where to resume
  std::map<Kind, int> seen;          // events by kind since the last resume (the checks')
  void apply(const streamcache::Event<std::string, int>& e) {
    ++seen[e.kind];
    if (e.kind == Kind::kReset) return state.clear();  // drop everything; the state follows
    if (e.kind == Kind::kRemove) state.erase(e.key);
    else state[e.key] = *e.value;
    last = e.seq;
  }
  // Up to the map's newest mutation, an insert (a relist after kReset omits removed keys).
  void resume(streamcache::StreamingMap<std::string, int>& map) {
    seen.clear();
    for (const uint64_t newest = map.last_seq(); const auto& e : map.stream_from(last)) {
      apply(e);
      if (e.kind != Kind::kReset && e.seq == newest) break;
    }
  }
};

int main() {
  streamcache::StreamingMapOptions options;
  options.ring_capacity = 4;  // tiny: a short disconnect outruns the ring (and the removal log)
  streamcache::StreamingMap<std::string, int> map(options);
  Consumer consumer;
  const auto expect = [&](const std::map<Kind, int>& kinds, const char* what) {
    std::map<std::string, int> contents;  // the map's, over every key used here
    for (const char* k : {"a", "b", "c", "d", "e", "f", "g", "h", "z"}) {
      if (const auto v = map.get(k)) contents[k] = *v;
    }
    const bool ok = consumer.seen == kinds && consumer.state == contents;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);  // not assert(): NDEBUG would drop it
    if (!ok) std::exit(EXIT_FAILURE);
  };
  for (const char* k : {"a", "b"}) map.insert(k, 1);
  auto first = map.stream_n(4);  // cutoff fixed here; history (a, b) is read as it is iterated
  for (const char* k : {"c", "d"}) map.insert(k, 3);  // new keys after the cutoff: live
  for (const auto& e : first) consumer.apply(e);
  expect({{Kind::kSnapshot, 2}, {Kind::kUpsert, 2}}, "stream_n: history a b, live c d");

  map.remove("a");  // 2 mutations while away: the 4-slot ring still holds them
  map.insert("b", 20);
  consumer.resume(map);
  expect({{Kind::kRemove, 1}, {Kind::kUpsert, 1}}, "resume from the ring: kRemove a, kUpsert b");

  map.insert("e", 5);  // 6 mutations: e, -c, f, g, h, d
  map.remove("c");
  for (const char* k : {"f", "g", "h", "d"}) map.insert(k, 9);
  consumer.resume(map);
  expect({{Kind::kResync, 5}, {Kind::kRemove, 1}}, "resume past the ring: kResync e f g h d, kRemove c (logged)");

  for (const char* k : {"e", "f", "g", "h", "d"}) map.remove(k);  // 5 removals: the log holds 4
  map.insert("z", 26);
  consumer.resume(map);
  expect({{Kind::kReset, 1}, {Kind::kResync, 2}}, "resume past the removal log: kReset, then kResync b z");
  return EXIT_SUCCESS;
}
