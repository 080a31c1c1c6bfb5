// A module with a license udrv does not treat as open source: loading it taints the process (P).
#include <udrv/module.hpp>
struct Closed {
    static udrv::Result<Closed> init(const udrv::ThisModule&) { return {}; }
};
UDRV_MODULE(Closed, .name = "test_proprietary", .description = "taints", .license = "Proprietary")
