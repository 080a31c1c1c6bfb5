#include "e1000e.hpp"

UDRV_PCI_DRIVER(udrv::e1000e::E1000e,
                .name = "udrv_e1000e",
                .authors = {"The udrv developers"},
                .description = "Intel 82574L (e1000e): legacy descriptor rings, device statistics, polled",
                .license = "GPL")
