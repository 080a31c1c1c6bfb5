#include <udrv/module.hpp>
struct TwoA {
    static udrv::Result<TwoA> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(TwoA, .name = "test_two_a", .license = "GPL")
