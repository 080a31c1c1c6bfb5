// Metadata without the required license field (UDRV_MODULE would not compile without one).
[[gnu::used, gnu::section("udrv_modinfo")]] const char test_nolicense_modinfo[] = "name=test_nolicense\0depends=\0abi=1";
