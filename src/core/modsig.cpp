// Module signatures (include/udrv/modsig.hpp). The trailer is untrusted input parsed by hand with every
// length checked; DER parsing, digests and signatures are OpenSSL's. Every OpenSSL object is owned by
// a unique_ptr with its free function, so an early return leaks nothing.
#include "udrv/modsig.hpp"

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "udrv/fileio.hpp"

namespace udrv::modsig {
namespace {

template <auto Free>
struct Deleter {
    template <typename T>
    void operator()(T* p) const noexcept { Free(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
struct CertStackFree {
    void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_pop_free(s, X509_free); }
};
using CertStackPtr = std::unique_ptr<STACK_OF(X509), CertStackFree>;
struct SignerStackFree {  // CMS_get0_signers: the stack is ours, the certificates are not
    void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_free(s); }
};

// The newest OpenSSL error queue entry as text (and the queue cleared), for messages.
std::string openssl_error() {
    unsigned long e = ERR_get_error();
    std::string out = e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown OpenSSL error" : "no detail from OpenSSL";
    ERR_clear_error();
    return out;
}

// A read-only memory BIO over `bytes` (OpenSSL takes an int length: callers keep below 2 GiB).
BioPtr mem_bio(std::span<const std::byte> bytes) {
    return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

std::string hex_colon(const unsigned char* p, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += fmt::format("{}{:02X}", i ? ":" : "", p[i]);
    return out;
}

std::string name_text(const X509_NAME* name) {
    if (!name) return {};
    if (int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1); i >= 0) {
        unsigned char* utf8 = nullptr;
        int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
        if (n >= 0) {
            std::string s(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));  // SAFETY: OpenSSL returned n UTF-8 bytes at utf8
            OPENSSL_free(utf8);
            return s;
        }
    }
    char buf[256];
    X509_NAME_oneline(name, buf, sizeof buf);
    return buf;
}

Result<CmsPtr> parse_cms(std::span<const std::byte> signature, std::string_view what) {
    if (signature.empty() || signature.size() > (64u << 20))
        return fail(EBADMSG, "{}: signature of {} bytes: not a PKCS#7 signature", what, signature.size());
    BioPtr in = mem_bio(signature);
    CmsPtr cms(in ? d2i_CMS_bio(in.get(), nullptr) : nullptr);
    if (!cms) return fail(EBADMSG, "{}: signature is not a DER PKCS#7/CMS structure ({})", what, openssl_error());
    if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed)
        return fail(EBADMSG, "{}: signature is PKCS#7 but not SignedData", what);
    STACK_OF(CMS_SignerInfo)* sis = CMS_get0_SignerInfos(cms.get());
    if (!sis || sk_CMS_SignerInfo_num(sis) != 1)
        return fail(EBADMSG, "{}: signature has {} signers; a module signature has exactly one", what, sis ? sk_CMS_SignerInfo_num(sis) : 0);
    return cms;
}

Info info_of(CMS_ContentInfo* cms) {
    Info info;
    CMS_SignerInfo* si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    ASN1_OCTET_STRING* keyid = nullptr;
    X509_NAME* issuer = nullptr;
    ASN1_INTEGER* serial = nullptr;
    if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) == 1) {
        info.signer = name_text(issuer);
        if (serial) info.sig_key = hex_colon(ASN1_STRING_get0_data(serial), static_cast<std::size_t>(ASN1_STRING_length(serial)));
        else if (keyid) info.sig_key = hex_colon(ASN1_STRING_get0_data(keyid), static_cast<std::size_t>(ASN1_STRING_length(keyid)));
    }
    X509_ALGOR* digest = nullptr;
    CMS_SignerInfo_get0_algs(si, nullptr, nullptr, &digest, nullptr);
    if (digest) {
        const ASN1_OBJECT* obj = nullptr;
        X509_ALGOR_get0(&obj, nullptr, nullptr, digest);
        const int nid = OBJ_obj2nid(obj);
        info.sig_hashalgo = nid != NID_undef ? OBJ_nid2sn(nid) : "unknown";
        for (char& c : info.sig_hashalgo) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));  // kmod's "sha256"
    }
    return info;
}

std::uint32_t be32(std::span<const std::byte> b) {
    return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | std::uint32_t(b[3]);
}

// Reads every certificate of a file: PEM (any number) or one DER.
Result<std::vector<X509Ptr>> read_certs(const std::filesystem::path& file) {
    const std::string bytes = UDRV_TRY(read_text_file(file, 1u << 20, "certificate"));
    std::vector<X509Ptr> out;
    BioPtr in = mem_bio(std::as_bytes(std::span(bytes)));
    while (X509* c = PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr)) out.emplace_back(c);
    ERR_clear_error();  // the end of the PEM data reads as an error
    if (out.empty()) {
        BioPtr der = mem_bio(std::as_bytes(std::span(bytes)));
        if (X509* c = d2i_X509_bio(der.get(), nullptr)) out.emplace_back(c);
        ERR_clear_error();
    }
    if (out.empty()) return fail(EINVAL, "{}: holds no certificate (PEM or DER X.509 expected)", file.string());
    return out;
}

Result<KeyPtr> read_key(const std::filesystem::path& file) {
    const std::string bytes = UDRV_TRY(read_text_file(file, 1u << 20, "private key"));
    BioPtr in = mem_bio(std::as_bytes(std::span(bytes)));
    KeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    if (!key) {
        ERR_clear_error();
        BioPtr der = mem_bio(std::as_bytes(std::span(bytes)));
        key.reset(d2i_PrivateKey_bio(der.get(), nullptr));
    }
    if (!key) return fail(EINVAL, "{}: holds no private key OpenSSL can read (PEM or DER, unencrypted): {}", file.string(), openssl_error());
    return key;
}

}  // namespace

Result<std::optional<Split>> split(std::span<const std::byte> file, std::string_view what) {
    const std::size_t magic = kMagic.size();
    if (file.size() < magic || std::memcmp(file.data() + file.size() - magic, kMagic.data(), magic) != 0) return std::nullopt;
    if (file.size() < magic + kTrailerSize)
        return fail(EBADMSG, "{}: ends in the signature magic but has no room for its {}-byte trailer", what, kTrailerSize);
    const auto trailer = file.subspan(file.size() - magic - kTrailerSize, kTrailerSize);
    const auto id_type = std::to_integer<std::uint8_t>(trailer[2]);
    if (id_type != kIdPkcs7)
        return fail(EBADMSG, "{}: signature of type {}; only PKCS#7 (type {}) is used by the kernel and udrv", what, id_type, kIdPkcs7);
    for (std::size_t i : {0, 1, 3, 4})
        if (trailer[i] != std::byte{0})
            return fail(EBADMSG, "{}: PKCS#7 signature trailer has a non-zero algo/hash/signer/key-id byte ({})", what, i);
    const std::uint32_t sig_len = be32(trailer.subspan(8, 4));
    const std::size_t before = file.size() - magic - kTrailerSize;
    if (sig_len == 0 || sig_len > before)
        return fail(EBADMSG, "{}: signature length {} does not fit in the {} bytes before the trailer", what, sig_len, before);
    return Split{file.first(before - sig_len), file.subspan(before - sig_len, sig_len)};
}

Result<Info> describe(std::span<const std::byte> signature, std::string_view what) {
    CmsPtr cms = UDRV_TRY(parse_cms(signature, what));
    return info_of(cms.get());
}

// ---- keyring ----

struct Keyring::Impl {
    std::filesystem::path dir;
    StorePtr store{X509_STORE_new()};
    CertStackPtr certs{sk_X509_new_null()};
};

Keyring::Keyring(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Keyring::Keyring(Keyring&&) noexcept = default;
Keyring& Keyring::operator=(Keyring&&) noexcept = default;
Keyring::~Keyring() = default;
std::size_t Keyring::size() const noexcept { return static_cast<std::size_t>(sk_X509_num(impl_->certs.get())); }
const std::filesystem::path& Keyring::dir() const noexcept { return impl_->dir; }

Result<Keyring> Keyring::load(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        return fail(ENOENT, "keyring {} is not a directory: put the certificates trusted to sign modules there", dir.string());
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    if (!impl->store || !impl->certs) return fail(ENOMEM, "keyring {}: OpenSSL could not allocate a certificate store", dir.string());
    // Each certificate is a trust anchor by itself, as in the kernel's keyring.
    X509_STORE_set_flags(impl->store.get(), X509_V_FLAG_PARTIAL_CHAIN);
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.is_regular_file(ec)) files.push_back(e.path());
    if (ec) return fail(ec.value(), "keyring {}: {}", dir.string(), ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        auto certs = UDRV_TRY_CTX(read_certs(f), "keyring {}", dir.string());
        for (auto& c : certs) {
            X509_STORE_add_cert(impl->store.get(), c.get());  // takes its own reference
            if (sk_X509_push(impl->certs.get(), c.get()) <= 0) return fail(ENOMEM, "keyring {}: OpenSSL could not grow its list", dir.string());
            (void)c.release();  // the list owns it now
        }
    }
    ERR_clear_error();
    return Keyring(std::move(impl));
}

Result<Info> verify(std::span<const std::byte> file, const Keyring& keyring, std::string_view what) {
    auto parts = UDRV_TRY(split(file, what));
    if (!parts) return fail(ENOKEY, "{} is not signed (sign it with udrv sign or the kernel's scripts/sign-file)", what);
    if (parts->module.size() > 0x7fffffffu) return fail(EFBIG, "{}: {} bytes is too large to verify", what, parts->module.size());
    CmsPtr cms = UDRV_TRY(parse_cms(parts->signature, what));
    Info info = info_of(cms.get());
    const std::string who = fmt::format("'{}' (key {})", info.signer, info.sig_key);

    // The signature over exactly the module bytes, by a certificate the keyring holds. The chain, the
    // time and the usage are checked below, not by CMS_verify, whose S/MIME purpose check would refuse
    // code-signing certificates.
    // The content behind a null filter: given a memory BIO itself, OpenSSL 3.0's CMS_verify copies it
    // into one of its own, which it leaks when the signature names a digest it cannot start (found by
    // the modsig fuzzer). Through a filter it reads ours directly.
    BioPtr content(BIO_new(BIO_f_null()));
    BIO* bytes = mem_bio(parts->module).release();
    if (!content || !bytes) {
        BIO_free(bytes);
        return fail(ENOMEM, "{}: OpenSSL could not allocate a buffer", what);
    }
    BIO_push(content.get(), bytes);  // the chain is freed with content
    if (CMS_verify(cms.get(), keyring.impl_->certs.get(), nullptr, content.get(), nullptr,
                   CMS_BINARY | CMS_DETACHED | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        const unsigned long e = ERR_peek_error();
        const std::string detail = openssl_error();
        if (ERR_GET_REASON(e) == CMS_R_SIGNER_CERTIFICATE_NOT_FOUND)
            return fail(ENOKEY, "{}: signed by {}, whose certificate is not in the keyring {} ({} trusted)", what, who,
                        keyring.dir().string(), keyring.size());
        return fail(EKEYREJECTED, "{}: the signature by {} does not match the module's bytes ({}): the file was changed after signing",
                    what, who, detail);
    }
    std::unique_ptr<STACK_OF(X509), SignerStackFree> signers(CMS_get0_signers(cms.get()));
    X509* signer = signers && sk_X509_num(signers.get()) == 1 ? sk_X509_value(signers.get(), 0) : nullptr;
    if (!signer) return fail(EBADMSG, "{}: OpenSSL verified the signature but names no signer certificate", what);

    StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), keyring.impl_->store.get(), signer, nullptr) != 1)
        return fail(ENOMEM, "{}: OpenSSL could not set up certificate verification", what);
    if (X509_verify_cert(ctx.get()) != 1) {
        const int err = X509_STORE_CTX_get_error(ctx.get());
        ERR_clear_error();
        const int code = err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID ? EKEYEXPIRED : EKEYREJECTED;
        return fail(code, "{}: the certificate of {} is not trusted: {}", what, who, X509_verify_cert_error_string(err));
    }
    // May the certificate sign code? Key usage, if stated, must allow digital signatures; extended
    // key usage, if stated, must include code signing.
    const std::uint32_t ku = X509_get_key_usage(signer);
    if (ku != UINT32_MAX && !(ku & KU_DIGITAL_SIGNATURE))
        return fail(EKEYREJECTED, "{}: the certificate of {} may not make signatures (its key usage lacks digitalSignature)", what, who);
    const std::uint32_t xku = X509_get_extended_key_usage(signer);
    if (xku != UINT32_MAX && !(xku & XKU_CODE_SIGN))
        return fail(EKEYREJECTED, "{}: the certificate of {} may not sign code (its extended key usage lacks codeSigning)", what, who);
    return info;
}

Result<std::vector<std::byte>> sign(std::span<const std::byte> module, std::string_view hash, const std::filesystem::path& key_file,
                                    const std::filesystem::path& cert_file, std::string_view what) {
    if (auto s = UDRV_TRY(split(module, what)); s)
        return fail(EEXIST, "{} is signed already: sign the unsigned module (the kernel's strip --strip-debug removes signatures too)", what);
    if (module.size() > 0x7fffffffu) return fail(EFBIG, "{}: {} bytes is too large to sign", what, module.size());
    const EVP_MD* md = EVP_get_digestbyname(std::string(hash).c_str());
    if (!md) return fail(EINVAL, "unknown hash algorithm '{}' (sha256, sha384, sha512, ...)", hash);
    KeyPtr key = UDRV_TRY(read_key(key_file));
    auto certs = UDRV_TRY(read_certs(cert_file));
    X509* cert = certs.front().get();

    // What sign-file does: CMS without certificates or signed attributes, binary, detached.
    BioPtr content = mem_bio(module);
    CmsPtr cms(CMS_sign(nullptr, nullptr, nullptr, nullptr, CMS_NOCERTS | CMS_PARTIAL | CMS_BINARY | CMS_DETACHED | CMS_STREAM));
    if (!cms || !content) return fail(ENOMEM, "{}: OpenSSL could not start a signature", what);
    if (!CMS_add1_signer(cms.get(), cert, key.get(), md, CMS_NOCERTS | CMS_BINARY | CMS_NOSMIMECAP | CMS_NOATTR))
        return fail(EINVAL, "{}: cannot sign with {} and {}: {} (does the key belong to the certificate?)", what, key_file.string(),
                    cert_file.string(), openssl_error());
    if (CMS_final(cms.get(), content.get(), nullptr, CMS_NOCERTS | CMS_BINARY) != 1)
        return fail(EIO, "{}: signing failed: {}", what, openssl_error());
    BioPtr out(BIO_new(BIO_s_mem()));
    if (!out || i2d_CMS_bio(out.get(), cms.get()) != 1) return fail(EIO, "{}: encoding the signature failed: {}", what, openssl_error());
    const char* der = nullptr;
    const long der_len = BIO_get_mem_data(out.get(), &der);
    if (der_len <= 0) return fail(EIO, "{}: encoding the signature gave nothing", what);

    std::vector<std::byte> signed_file(module.begin(), module.end());
    const auto* d = reinterpret_cast<const std::byte*>(der);  // SAFETY: BIO_get_mem_data: der_len bytes owned by `out`
    signed_file.insert(signed_file.end(), d, d + der_len);
    const auto n = static_cast<std::uint32_t>(der_len);
    const std::byte trailer[kTrailerSize] = {std::byte{0}, std::byte{0}, std::byte{kIdPkcs7}, std::byte{0}, std::byte{0}, std::byte{0},
                                             std::byte{0}, std::byte{0}, std::byte(n >> 24), std::byte(n >> 16), std::byte(n >> 8),
                                             std::byte(n)};
    signed_file.insert(signed_file.end(), std::begin(trailer), std::end(trailer));
    const auto m = std::as_bytes(std::span(kMagic));
    signed_file.insert(signed_file.end(), m.begin(), m.end());
    return signed_file;
}

// ---- policy ----

Result<Policy> parse_policy(std::string_view text) {
    if (text == "off") return Policy::off;
    if (text == "permissive") return Policy::permissive;
    if (text == "enforce") return Policy::enforce;
    return fail(EINVAL, "module signature policy '{}': one of off, permissive, enforce", text);
}

std::string_view policy_name(Policy p) noexcept {
    switch (p) {
        case Policy::off: return "off";
        case Policy::permissive: return "permissive";
        case Policy::enforce: return "enforce";
    }
    return "?";
}

Result<Settings> settings_from_environment() {
    Settings s;
    if (const char* k = std::getenv("UDRV_KEYRING"); k && *k) s.keyring_dir = k;
    if (const char* p = std::getenv("UDRV_MODULE_SIG"); p && *p) {
        s.policy = UDRV_TRY_CTX(parse_policy(p), "UDRV_MODULE_SIG");
    } else {
        std::error_code ec;
        s.policy = std::filesystem::is_directory(s.keyring_dir, ec) ? Policy::permissive : Policy::off;
    }
    return s;
}

Result<Verdict> check(std::span<const std::byte> file, Policy policy, const Result<const Keyring*>& keyring, std::string_view what) {
    if (policy == Policy::off) return Verdict{};
    if (!keyring) {
        if (policy == Policy::enforce) return std::unexpected(Error(keyring.error()).context(fmt::format("{}: module signatures are enforced", what)));
        return Verdict{std::nullopt, fmt::format("{}: no keyring to verify its signature against ({})", what, keyring.error().message())};
    }
    auto r = verify(file, **keyring, what);
    if (r) return Verdict{std::move(*r), {}};
    if (policy == Policy::enforce)
        return std::unexpected(std::move(r).error().context("module signatures are enforced"));
    return Verdict{std::nullopt, r.error().message()};
}

}  // namespace udrv::modsig
