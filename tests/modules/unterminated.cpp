// A modinfo section whose last string has no NUL terminator.
[[gnu::used, gnu::section("udrv_modinfo")]] const char test_unterminated_modinfo[4] = {'n', 'a', 'm', 'e'};
