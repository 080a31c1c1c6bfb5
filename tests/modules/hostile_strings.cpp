// Metadata strings no tool may pass to a terminal or a JSON encoder as they are: invalid UTF-8 (Latin-1
// bytes) and an escape sequence that would clear the screen.
[[gnu::used, gnu::section("udrv_modinfo")]] const char test_hostile_modinfo[] =
    "name=test_hostile\0license=GPL\0abi=1\0description=caf\xe9 \x1b[2J cleared?\0author=\xff\xfe\0";
