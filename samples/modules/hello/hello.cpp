// The smallest complete udrv module: it logs when loaded and when unloaded.
#include <udrv/log.hpp>
#include <udrv/module.hpp>

struct Hello {
    static udrv::Result<Hello> init(const udrv::ThisModule& self) {
        udrv::pr_info("{}: hello from user space", self.name());
        return {};
    }
    ~Hello() { udrv::pr_info("udrv_sample_hello: goodbye"); }
};

UDRV_MODULE(Hello,
            .name = "udrv_sample_hello",
            .authors = {"The udrv developers"},
            .description = "Minimal module: logs on load and unload",
            .license = "GPL")
