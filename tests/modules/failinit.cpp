// Its init fails; it depends on the provider sample, which the loader must unload again.
#include <udrv/module.hpp>
struct FailInit {
    static udrv::Result<FailInit> init(const udrv::ThisModule&) { return udrv::fail(EIO, "simulated hardware fault"); }
};
UDRV_MODULE(FailInit, .name = "test_failinit", .license = "GPL", .depends = {"udrv_sample_provider"})
