// A module other modules depend on: it exports next_ticket() (the kernel's EXPORT_SYMBOL).
#include "provider.hpp"

#include <udrv/log.hpp>
#include <udrv/module.hpp>

namespace {
std::uint64_t g_next = 0;
bool g_live = false;
}  // namespace

std::uint64_t udrv_sample_provider::next_ticket() { return g_live ? g_next++ : 0; }

struct Provider {
    static constexpr udrv::Param<std::uint64_t> first{"first", 1000, "First ticket number"};

    static udrv::Result<Provider> init(const udrv::ThisModule& self) {
        g_next = self.param(first);
        g_live = true;
        udrv::pr_info("{}: tickets start at {}", self.name(), g_next);
        return {};
    }
    ~Provider() { g_live = false; }
};

UDRV_MODULE(Provider,
            .name = "udrv_sample_provider",
            .authors = {"The udrv developers"},
            .description = "Exports a ticket counter to dependent modules",
            .license = "GPL",
            .params = {Provider::first})
