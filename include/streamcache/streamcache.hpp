// Umbrella header: everything public in streamcache.
#pragma once

#include "streamcache/broadcast.hpp"
#include "streamcache/cache.hpp"
#include "streamcache/clock.hpp"
#include "streamcache/generator.hpp"
#include "streamcache/streaming_map.hpp"
