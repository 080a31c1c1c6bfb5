// Module signatures: the trailer parser against malformed input, verification against each way a
// signature can be wrong, and the loader's policies, including a file swapped between the check and
// the load. Keys and certificates are made here with OpenSSL (EC P-256: quick).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "udrv/fileio.hpp"
#include "udrv/loader.hpp"
#include "udrv/log.hpp"
#include "udrv/modsig.hpp"

namespace fs = std::filesystem;
using namespace udrv;

namespace {

struct Usage {
    long not_before_days = -1, not_after_days = 365;
    const char* key_usage = "critical,digitalSignature";  // nullptr: none stated
    const char* ext_key_usage = nullptr;
};

// Writes key.pem and cert.pem (self-signed, CN `cn`, serial `serial`) into `dir`.
void make_signer(const fs::path& dir, const char* cn, long serial, Usage u = {}) {
    fs::create_directories(dir);
    EVP_PKEY* key = EVP_EC_gen("P-256");
    ASSERT_NE(key, nullptr);
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), u.not_before_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), u.not_after_days * 86400);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    auto add = [&](int nid, const char* value) {
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
        ASSERT_NE(ext, nullptr) << value;
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    };
    add(NID_basic_constraints, "critical,CA:FALSE");
    if (u.key_usage) add(NID_key_usage, u.key_usage);
    if (u.ext_key_usage) add(NID_ext_key_usage, u.ext_key_usage);
    ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
    FILE* f = std::fopen((dir / "key.pem").c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    f = std::fopen((dir / "cert.pem").c_str(), "w");
    PEM_write_X509(f, x);
    std::fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

std::string read_all(const fs::path& p) { return *read_text_file(p, 512u << 20, "test"); }
void write_all(const fs::path& p, std::string_view s) {
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(s.data(), static_cast<std::streamsize>(s.size()));
}
std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }
std::string as_string(const std::vector<std::byte>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size()); }

class ModSig : public ::testing::Test {
protected:
    void SetUp() override {
        dir = fs::temp_directory_path() / ("udrv-modsig-" + std::to_string(::getpid()) + "-" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir);
        fs::create_directories(dir / "keyring");
        make_signer(dir / "good", "udrv test signing key", 0x1234);
        fs::copy_file(dir / "good/cert.pem", dir / "keyring/good.pem");
        module = read_all(fs::path(UDRV_SAMPLE_MODULE_DIR) / "udrv_sample_hello.so");
    }
    void TearDown() override { fs::remove_all(dir); }
    std::string signed_by(const char* who, std::string_view hash = "sha256") {
        auto r = modsig::sign(bytes(module), hash, dir / who / "key.pem", dir / who / "cert.pem", "hello");
        EXPECT_TRUE(r) << r.error().message();
        return r ? as_string(*r) : std::string();
    }
    Result<modsig::Info> check(const std::string& file) {
        auto ring = modsig::Keyring::load(dir / "keyring");
        if (!ring) return std::unexpected(ring.error());
        return modsig::verify(bytes(file), *ring, "hello");
    }
    fs::path dir;
    std::string module;
};

}  // namespace

TEST_F(ModSig, SignedVerifiesAndDescribesItself) {
    const std::string s = signed_by("good");
    auto parts = *modsig::split(bytes(s), "hello");
    ASSERT_TRUE(parts);
    EXPECT_EQ(parts->module.size(), module.size());
    auto info = check(s);
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_EQ(info->sig_id, "PKCS#7");
    EXPECT_EQ(info->signer, "udrv test signing key");
    EXPECT_EQ(info->sig_key, "12:34");
    EXPECT_EQ(info->sig_hashalgo, "sha256");
    auto d = modsig::describe(parts->signature, "hello");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->signer, info->signer);
    auto s512 = check(signed_by("good", "sha512"));
    ASSERT_TRUE(s512) << s512.error().message();
    EXPECT_EQ(s512->sig_hashalgo, "sha512");
}

TEST_F(ModSig, UnsignedIsNoKey) {
    EXPECT_FALSE(*modsig::split(bytes(module), "hello"));
    auto r = check(module);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOKEY);
    EXPECT_NE(r.error().message().find("is not signed"), std::string::npos) << r.error().message();
}

TEST_F(ModSig, ASignatureOverOtherBytesIsRejected) {
    std::string s = signed_by("good");
    s[100] = static_cast<char>(s[100] ^ 1);  // a byte of the module, not of the signature
    auto r = check(s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EKEYREJECTED);
    EXPECT_NE(r.error().message().find("does not match the module's bytes"), std::string::npos) << r.error().message();
}

TEST_F(ModSig, MalformedTrailersAreBadMessages) {
    const std::string s = signed_by("good");
    const std::size_t tail = modsig::kMagic.size() + modsig::kTrailerSize;
    auto expect_bad = [&](std::string f, const char* says) {
        auto r = modsig::split(bytes(f), "hello");
        ASSERT_FALSE(r) << says;
        EXPECT_EQ(r.error().code(), EBADMSG);
        EXPECT_NE(r.error().message().find(says), std::string::npos) << r.error().message();
        EXPECT_FALSE(check(f));
    };
    expect_bad(std::string(modsig::kMagic.substr(4)).insert(0, "~Mod"), "no room for its 12-byte trailer");
    std::string len = s;  // a length beyond the file
    len[len.size() - modsig::kMagic.size() - 4] = '\x7f';
    expect_bad(len, "does not fit");
    std::string zero = s;  // a length of zero
    for (int i = 1; i <= 4; ++i) zero[zero.size() - modsig::kMagic.size() - static_cast<std::size_t>(i)] = 0;
    expect_bad(zero, "does not fit");
    std::string type = s;  // not PKCS#7
    type[type.size() - tail + 2] = 1;
    expect_bad(type, "only PKCS#7");
    std::string pad = s;
    pad[pad.size() - tail] = 1;
    expect_bad(pad, "non-zero");
    // Truncated: the signature loses its first bytes (the length now reaches into the module).
    std::string cut = s.substr(0, module.size()) + s.substr(module.size() + 10);
    auto r = check(cut);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().code() == EBADMSG || r.error().code() == EKEYREJECTED) << r.error().message();
    // Garbage where the DER should be.
    std::string junk = s;
    for (std::size_t i = module.size(); i < module.size() + 8; ++i) junk[i] = 'x';
    auto j = check(junk);
    ASSERT_FALSE(j);
    EXPECT_EQ(j.error().code(), EBADMSG) << j.error().message();
}

TEST_F(ModSig, UntrustedExpiredAndWrongUsageCertificatesAreRefused) {
    make_signer(dir / "stranger", "someone else", 7);
    auto r = check(signed_by("stranger"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOKEY);
    EXPECT_NE(r.error().message().find("'someone else' (key 07), whose certificate is not in the keyring"), std::string::npos)
        << r.error().message();

    make_signer(dir / "expired", "expired key", 8, {.not_before_days = -30, .not_after_days = -1});
    fs::copy_file(dir / "expired/cert.pem", dir / "keyring/expired.pem");
    r = check(signed_by("expired"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EKEYEXPIRED);
    EXPECT_NE(r.error().message().find("expired"), std::string::npos) << r.error().message();

    make_signer(dir / "encipher", "encryption key", 9, {.key_usage = "critical,keyEncipherment"});
    fs::copy_file(dir / "encipher/cert.pem", dir / "keyring/encipher.pem");
    r = check(signed_by("encipher"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EKEYREJECTED);
    EXPECT_NE(r.error().message().find("lacks digitalSignature"), std::string::npos) << r.error().message();

    make_signer(dir / "tls", "tls server", 10, {.ext_key_usage = "serverAuth"});
    fs::copy_file(dir / "tls/cert.pem", dir / "keyring/tls.pem");
    r = check(signed_by("tls"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EKEYREJECTED);
    EXPECT_NE(r.error().message().find("lacks codeSigning"), std::string::npos) << r.error().message();

    make_signer(dir / "code", "code signer", 11, {.ext_key_usage = "codeSigning"});
    fs::copy_file(dir / "code/cert.pem", dir / "keyring/code.pem");
    auto ok = check(signed_by("code"));
    EXPECT_TRUE(ok) << ok.error().message();
}

TEST_F(ModSig, SigningTwiceAndBadKeysSayWhy) {
    const std::string s = signed_by("good");
    auto twice = modsig::sign(bytes(s), "sha256", dir / "good/key.pem", dir / "good/cert.pem", "hello");
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code(), EEXIST);
    make_signer(dir / "other", "other", 3);
    auto mismatch = modsig::sign(bytes(module), "sha256", dir / "other/key.pem", dir / "good/cert.pem", "hello");
    ASSERT_FALSE(mismatch);
    EXPECT_NE(mismatch.error().message().find("does the key belong to the certificate?"), std::string::npos) << mismatch.error().message();
    auto hash = modsig::sign(bytes(module), "md17", dir / "good/key.pem", dir / "good/cert.pem", "hello");
    ASSERT_FALSE(hash);
    EXPECT_EQ(hash.error().code(), EINVAL);
    write_all(dir / "keyring/junk.pem", "not a certificate");
    auto ring = modsig::Keyring::load(dir / "keyring");
    ASSERT_FALSE(ring);
    EXPECT_NE(ring.error().message().find("junk.pem: holds no certificate"), std::string::npos) << ring.error().message();
}

TEST_F(ModSig, LoaderEnforcesPermitsAndTaints) {
    write_all(dir / "unsigned.so", module);
    {
        Loader l;
        l.set_signature_policy(modsig::Policy::enforce, dir / "keyring");
        auto r = l.load((dir / "unsigned.so").string());
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), ENOKEY);
        EXPECT_NE(r.error().message().find("is not signed"), std::string::npos) << r.error().message();
        EXPECT_NE(r.error().message().find("module signatures are enforced"), std::string::npos) << r.error().message();
        EXPECT_EQ(l.taint(), "");
    }
    write_all(dir / "signed.so", signed_by("good"));
    {
        Loader l;
        l.set_signature_policy(modsig::Policy::enforce, dir / "keyring");
        auto r = l.load((dir / "signed.so").string());
        ASSERT_TRUE(r) << r.error().message();
        ASSERT_TRUE((*r)->signature);
        EXPECT_EQ((*r)->signature->signer, "udrv test signing key");
        EXPECT_EQ(l.taint(), "");
    }
    {
        Loader l;
        l.set_signature_policy(modsig::Policy::permissive, dir / "keyring");
        auto r = l.load((dir / "unsigned.so").string());
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_FALSE((*r)->signature);
        EXPECT_EQ(l.taint(), "E");
    }
    {
        Loader l;
        l.set_signature_policy(modsig::Policy::enforce, dir / "no-such-keyring");
        auto r = l.load((dir / "signed.so").string());
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), ENOENT);
        EXPECT_NE(r.error().message().find("no-such-keyring is not a directory"), std::string::npos) << r.error().message();
    }
}

// The file is replaced between the check and the load (another module, unsigned, renamed over it):
// the loader maps the bytes it verified, not the file's new contents.
TEST_F(ModSig, TheBytesVerifiedAreTheBytesLoaded) {
    write_all(dir / "udrv_sample_hello.so", signed_by("good"));
    const std::string other = read_all(fs::path(UDRV_SAMPLE_MODULE_DIR) / "udrv_sample_params.so");
    Loader l;
    l.set_signature_policy(modsig::Policy::enforce, dir / "keyring");
    bool swapped = false;
    l.set_after_verify([&](const fs::path& p) {
        write_all(dir / "swap.tmp", other);
        fs::rename(dir / "swap.tmp", p);
        swapped = true;
    });
    auto r = l.load((dir / "udrv_sample_hello.so").string());
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(swapped);
    EXPECT_EQ((*r)->name, "udrv_sample_hello");
    EXPECT_EQ(read_all(dir / "udrv_sample_hello.so"), other);  // the file did change
    EXPECT_EQ(l.list().size(), 1u);
}

// A module unloaded and loaded again (a new sealed copy each time) runs its init again, and the
// descriptors of the copies do not pile up.
TEST_F(ModSig, ReloadingLeavesNoDescriptors) {
    auto fds = [] { return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{}); };
    Loader l;
    ASSERT_TRUE(l.load(std::string(UDRV_SAMPLE_MODULE_DIR) + "/udrv_sample_hello.so"));
    ASSERT_TRUE(l.unload("udrv_sample_hello"));
    const auto before = fds();
    for (int i = 0; i < 5; ++i) {
        auto r = l.load(std::string(UDRV_SAMPLE_MODULE_DIR) + "/udrv_sample_hello.so");
        ASSERT_TRUE(r) << r.error().message();
        ASSERT_TRUE(l.unload("udrv_sample_hello"));
    }
    EXPECT_LE(fds(), before + 1);
}

// A module refused for its signature is refused before its dependencies are loaded: none of their
// code runs (the provider is signed, the consumer that needs it is not).
TEST_F(ModSig, ARefusedModuleLoadsNoneOfItsDependencies) {
    const std::string provider = read_all(fs::path(UDRV_SAMPLE_MODULE_DIR) / "udrv_sample_provider.so");
    auto signed_provider = modsig::sign(bytes(provider), "sha256", dir / "good/key.pem", dir / "good/cert.pem", "provider");
    ASSERT_TRUE(signed_provider);
    write_all(dir / "udrv_sample_provider.so", as_string(*signed_provider));
    write_all(dir / "udrv_sample_consumer.so", read_all(fs::path(UDRV_SAMPLE_MODULE_DIR) / "udrv_sample_consumer.so"));
    std::vector<std::string> log;
    udrv::set_log_sink([&](udrv::LogLevel, std::string_view m) { log.emplace_back(m); });
    Loader l;
    l.set_signature_policy(modsig::Policy::enforce, dir / "keyring");
    auto r = l.load((dir / "udrv_sample_consumer.so").string());
    udrv::set_log_sink(nullptr);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("udrv_sample_consumer.so is not signed"), std::string::npos) << r.error().message();
    for (const auto& m : log) EXPECT_EQ(m.find("tickets start at"), std::string::npos) << m;  // the provider's init never ran
    EXPECT_TRUE(l.list().empty());
}
