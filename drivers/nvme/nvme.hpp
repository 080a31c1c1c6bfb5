// NVMe over PCIe, in user space: the driver's public face. Split by concern, as SPDK's is:
//   spec.hpp        the spec's structures and their validated parsing (a library of its own)
//   cmd.hpp         commands built from named fields
//   queue.hpp       a submission/completion queue pair, owned by one thread, no locks
//   controller.hpp  bring-up (NVMe 1.4, 7.6.1), the admin path, reset, the service thread, remove
#pragma once

#include "controller.hpp"
