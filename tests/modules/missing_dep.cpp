#include <udrv/module.hpp>
struct MissingDep {
    static udrv::Result<MissingDep> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(MissingDep, .name = "test_missing_dep", .license = "GPL", .depends = {"test_no_such_module"})
