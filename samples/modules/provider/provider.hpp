// API that udrv_sample_provider exports to modules that depend on it.
#pragma once

#include <cstdint>

namespace udrv_sample_provider {
/// Hands out increasing ticket numbers, starting at the module's `first` parameter.
[[gnu::visibility("default")]] std::uint64_t next_ticket();
}  // namespace udrv_sample_provider
