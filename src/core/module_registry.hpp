// Internal: the table of modules registered by static constructors.
#pragma once

#include <vector>

#include "udrv/module.hpp"

namespace udrv::detail {

struct RegisteredModule {
    const ModuleEntry* entry;
    bool builtin;  ///< registered at program start-up rather than during the loader's dlopen()
};

std::vector<RegisteredModule> registered_modules();

/// While alive, registrations come from the file being dlopen()ed.
class DlopenScope {
public:
    DlopenScope();
    ~DlopenScope();
    DlopenScope(const DlopenScope&) = delete;
    DlopenScope& operator=(const DlopenScope&) = delete;
};

}  // namespace udrv::detail
