#include "edu.hpp"

UDRV_PCI_DRIVER(udrv::edu::Edu,
                .name = "udrv_edu",
                .authors = {"The udrv developers"},
                .description = "Driver for QEMU's edu teaching device: MMIO, MSI or INTx, DMA through the IOMMU",
                .license = "GPL",
                .params = {udrv::edu::Edu::kIntx, udrv::edu::Edu::kDmaBits})
