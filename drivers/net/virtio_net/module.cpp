#include "virtio_net.hpp"

UDRV_PCI_DRIVER(udrv::virtio_net::VirtioNet,
                .name = "udrv_virtio_net",
                .authors = {"The udrv developers"},
                .description = "virtio-net over the modern (virtio 1.x) PCI transport, split virtqueues, multiqueue, polled or MSI-X",
                .license = "GPL")
