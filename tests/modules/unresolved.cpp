// References a symbol nothing defines: dlopen(RTLD_NOW) fails, and the loader must say so cleanly.
#include <udrv/module.hpp>
extern "C" int test_symbol_that_does_not_exist();
struct Unresolved {
    static udrv::Result<Unresolved> init(const udrv::ThisModule&) {
        return test_symbol_that_does_not_exist() ? udrv::Result<Unresolved>{} : udrv::fail(EIO, "unreachable");
    }
};
UDRV_MODULE(Unresolved, .name = "test_unresolved", .license = "GPL")
