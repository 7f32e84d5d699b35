// Umbrella header: everything public in streamcache.
#pragma once

#include "streamcache/clock.hpp"
#include "streamcache/generator.hpp"
