// Signed modules, in the Linux kernel's format so that its tools interoperate (scripts/sign-file signs
// modules udrv verifies; `udrv sign` signs modules `openssl cms -verify` accepts):
//
//     module bytes | PKCS#7/CMS SignedData, DER, detached, no attributes | struct module_signature
//                  | "~Module signature appended~\n"
//
// struct module_signature is 12 bytes: algo, hash, id_type (2: PKCS#7), signer_len, key_id_len (all
// 0 but id_type for PKCS#7), 3 bytes of padding, then the signature's length, big-endian. The trailer
// is parsed here by hand (every length checked against the file); the DER and the cryptography are
// OpenSSL's (Debian's libssl).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "udrv/result.hpp"

namespace udrv::modsig {

inline constexpr std::string_view kMagic = "~Module signature appended~\n";
/// sizeof(struct module_signature) in the kernel's include/linux/module_signature.h.
inline constexpr std::size_t kTrailerSize = 12;
inline constexpr std::uint8_t kIdPkcs7 = 2;

/// A signed file split into what was signed and the signature.
struct Split {
    std::span<const std::byte> module;     ///< the bytes the signature covers
    std::span<const std::byte> signature;  ///< PKCS#7/CMS SignedData, DER
};

/// Finds the appended signature. nullopt: the file is not signed (no magic at its end). EBADMSG: the
/// magic is there but the trailer is malformed (truncated, a length beyond the file, not PKCS#7).
Result<std::optional<Split>> split(std::span<const std::byte> file, std::string_view what);

/// What `modinfo` shows of a signature, as the kernel's modinfo (kmod) names it.
struct Info {
    std::string sig_id = "PKCS#7";
    std::string signer;        ///< the common name (else the whole name) of the signer certificate's issuer
    std::string sig_key;       ///< the signer certificate's serial number (or subject key id), hex bytes with ':'
    std::string sig_hashalgo;  ///< "sha256", ...
};
/// Reads the signer's identity and the digest from a signature without verifying it. EBADMSG if it is
/// not a DER CMS SignedData with one signer.
Result<Info> describe(std::span<const std::byte> signature, std::string_view what);

/// Certificates trusted to sign modules: every certificate (PEM, several per file, or DER) in the
/// files of a directory. Each is trusted by itself (it need not chain to a root), as the kernel's
/// builtin keyring trusts its keys.
class Keyring {
public:
    /// EINVAL naming the file when one holds no certificate; ENOENT when the directory is missing.
    static Result<Keyring> load(const std::filesystem::path& dir);
    Keyring(Keyring&&) noexcept;
    Keyring& operator=(Keyring&&) noexcept;
    ~Keyring();
    std::size_t size() const noexcept;
    const std::filesystem::path& dir() const noexcept;

private:
    friend Result<Info> verify(std::span<const std::byte>, const Keyring&, std::string_view);
    struct Impl;
    explicit Keyring(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Checks a signed file against the keyring: the signature covers exactly the module bytes, its
/// signer certificate is in the keyring, is valid now and may sign code (key usage digitalSignature if
/// stated; extended key usage codeSigning if stated). Errors say which: ENOKEY (not signed, or signed
/// by a certificate the keyring does not hold), EKEYREJECTED (the bytes do not match, or the
/// certificate may not sign code), EKEYEXPIRED (the certificate expired or is not valid yet),
/// EBADMSG (a malformed signature).
Result<Info> verify(std::span<const std::byte> file, const Keyring& keyring, std::string_view what);

/// Signs `module` (which must not be signed already) like the kernel's sign-file: `hash` ("sha256",
/// "sha512", ...), the private key and certificate files in PEM or DER. Returns the signed file.
Result<std::vector<std::byte>> sign(std::span<const std::byte> module, std::string_view hash, const std::filesystem::path& key,
                                    const std::filesystem::path& cert, std::string_view what);

/// What a loader does with a module's signature (the kernel's CONFIG_MODULE_SIG / _FORCE).
enum class Policy {
    off,         ///< signatures are not checked
    permissive,  ///< checked; an unsigned or failing module is loaded, with a warning, and taints ("E")
    enforce,     ///< checked; an unsigned or failing module is refused with the reason
};
Result<Policy> parse_policy(std::string_view text);
std::string_view policy_name(Policy p) noexcept;

/// The policy and keyring a process uses unless told otherwise: $UDRV_MODULE_SIG (off, permissive,
/// enforce) and $UDRV_KEYRING (default /etc/udrv/keys). Without $UDRV_MODULE_SIG: permissive when the
/// keyring directory exists, off when it does not.
struct Settings {
    Policy policy = Policy::off;
    std::filesystem::path keyring_dir = "/etc/udrv/keys";
};
Result<Settings> settings_from_environment();

/// Applies a policy to a module file's bytes against `keyring` (the error that kept it from being
/// read, if it could not be). Returns the verified signature's Info (nullopt when the policy is off
/// or, under permissive, when verification failed: `warning` then says why, and the caller taints).
/// Under enforce, the error names the module and what to do.
struct Verdict {
    std::optional<Info> info;
    std::string warning;  ///< non-empty: loaded anyway (permissive), say it and taint
};
Result<Verdict> check(std::span<const std::byte> file, Policy policy, const Result<const Keyring*>& keyring, std::string_view what);

}  // namespace udrv::modsig
