#include "fileblk.hpp"

UDRV_PLATFORM_DRIVER(udrv::fileblk::FileBlock,
                     .name = "udrv_fileblk",
                     .authors = {"The udrv developers"},
                     .description = "Block device backed by a file or host block device, through io_uring (udrv,file-block)",
                     .license = "GPL")
