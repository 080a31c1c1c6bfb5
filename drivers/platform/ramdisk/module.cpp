// The module declaration of the ramdisk driver (built into the udrv tool and as udrv_ramdisk.so).
#include "ramdisk.hpp"

UDRV_PLATFORM_DRIVER(udrv::ramdisk::Ramdisk,
                     .name = "udrv_ramdisk",
                     .authors = {"The udrv developers"},
                     .description = "RAM-backed block device (udrv,ramdisk), optionally loaded from and saved to an image file",
                     .license = "GPL")
