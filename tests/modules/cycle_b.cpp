#include <udrv/module.hpp>
struct CycleB {
    static udrv::Result<CycleB> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(CycleB, .name = "test_cycle_b", .license = "GPL", .depends = {"test_cycle_a"})
