#include "nvme.hpp"

UDRV_PCI_DRIVER(udrv::nvme::Controller,
                .name = "udrv_nvme",
                .authors = {"The udrv developers"},
                .description = "NVMe over PCIe: polled, interrupt or hybrid queue pairs, one per thread, no locks on the I/O path",
                .license = "GPL",
                .params = {udrv::nvme::Controller::kIoTimeout})
