#include <udrv/module.hpp>
struct CycleA {
    static udrv::Result<CycleA> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(CycleA, .name = "test_cycle_a", .license = "GPL", .depends = {"test_cycle_b"})
