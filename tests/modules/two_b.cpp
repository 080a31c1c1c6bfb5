#include <udrv/module.hpp>
struct TwoB {
    static udrv::Result<TwoB> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(TwoB, .name = "test_two_b", .license = "GPL")
