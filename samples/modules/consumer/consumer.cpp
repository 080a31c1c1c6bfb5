// A module that depends on another: the loader loads udrv_sample_provider first and refuses to unload
// it while this one is loaded.
#include "../provider/provider.hpp"

#include <udrv/log.hpp>
#include <udrv/module.hpp>

struct Consumer {
    static udrv::Result<Consumer> init(const udrv::ThisModule& self) {
        auto a = udrv_sample_provider::next_ticket();
        auto b = udrv_sample_provider::next_ticket();
        if (a == 0 || b != a + 1) return udrv::fail(EPROTO, "provider is not initialised (tickets {}, {})", a, b);
        udrv::pr_info("{}: got tickets {} and {} from udrv_sample_provider", self.name(), a, b);
        return {};
    }
};

UDRV_MODULE(Consumer,
            .name = "udrv_sample_consumer",
            .authors = {"The udrv developers"},
            .description = "Depends on udrv_sample_provider and uses its API",
            .license = "GPL",
            .depends = {"udrv_sample_provider"})
