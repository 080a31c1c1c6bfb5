// Module signatures on arbitrary files: the loader, udrvd and `udrv modinfo` read the trailer and the
// PKCS#7 DER of module files before anything else is trusted. The trailer parser is udrv's own; the DER
// is OpenSSL's, reached through udrv's checks. The keyring holds the certificate that signed the seed
// (tests/fuzz/corpus/modsig/signed-p256), so mutations reach the signature check too.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>

#include "udrv/modsig.hpp"

namespace {

constexpr const char* kCert = R"(-----BEGIN CERTIFICATE-----
MIIBlzCCAT2gAwIBAgIUZxrtgPNGbGwrB9c3XV9k8qeobdowCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdWRydiBmdXp6IGtleTAgFw0yNjEyMDYwNDAxMzBaGA8yMTI2
MTExMjA0MDEzMFowGDEWMBQGA1UEAwwNdWRydiBmdXp6IGtleTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABGq0sZMWCLun5lTjHyQ4xSR+A6pN90bZijZc+Pdi5tjH
pmdLH9gtcnxNcQ04MgDyhkTvvjOvKmWOd+pW9mXWe6WjYzBhMB0GA1UdDgQWBBTu
2d3WqAvIDRg4fxAEL7W33SQxcDAfBgNVHSMEGDAWgBTu2d3WqAvIDRg4fxAEL7W3
3SQxcDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIHgDAKBggqhkjOPQQD
AgNIADBFAiEAz09TvDrCKkhzQ4kEP9g2FBlWQxK81iZpPfmHgjnzWR0CIGYobYiF
SxrMZUrQy3xMpLR3oXh2GxZBVNwYrEbzcvRh
-----END CERTIFICATE-----
)";

std::optional<udrv::modsig::Keyring> ring;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const auto dir = std::filesystem::temp_directory_path() / ("udrv-fuzz-keyring-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "fuzz.pem") << kCert;
    auto r = udrv::modsig::Keyring::load(dir);
    std::filesystem::remove_all(dir);
    if (!r) __builtin_trap();
    ring.emplace(std::move(*r));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto file = std::as_bytes(std::span(data, size));
    auto parts = udrv::modsig::split(file, "fuzz.so");
    if (parts && *parts) (void)udrv::modsig::describe((*parts)->signature, "fuzz.so");
    (void)udrv::modsig::describe(file, "fuzz.der");  // the DER parser on its own
    (void)udrv::modsig::verify(file, *ring, "fuzz.so");
    (void)udrv::modsig::check(file, udrv::modsig::Policy::permissive, &*ring, "fuzz.so");
    (void)udrv::modsig::check(file, udrv::modsig::Policy::enforce, &*ring, "fuzz.so");
    return 0;
}
