// Metadata written by hand, claiming a future module ABI: the loader must refuse it before dlopen.
[[gnu::used, gnu::section("udrv_modinfo")]] const char test_badabi_modinfo[] = "name=test_badabi\0license=GPL\0depends=\0abi=99";
