// Text that came from somewhere else (a module's metadata, pci.ids, sysfs, a device, a description file)
// on its way to a terminal: control bytes and broken UTF-8 must not reach it as they are (an escape
// sequence in a module's description could rewrite the screen).
#pragma once

#include <string>
#include <string_view>

namespace udrv {

/// `s` with every C0 control byte other than newline and tab, DEL, every C1 control (U+0080-U+009F)
/// and every byte that is not part of valid UTF-8 written as \xNN. Valid UTF-8 text passes unchanged.
std::string printable(std::string_view s);

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

}  // namespace udrv
