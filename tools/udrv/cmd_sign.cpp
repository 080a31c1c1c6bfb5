// udrv sign / udrv verify: module signatures in the kernel's format (include/udrv/modsig.hpp). `sign`
// takes sign-file's arguments in sign-file's order; `verify` checks files against a keyring as the
// loader would under the enforce policy.
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "command.hpp"
#include "output.hpp"
#include "udrv/fileio.hpp"
#include "udrv/modinfo.hpp"
#include "udrv/modsig.hpp"

namespace udrv::tools {
namespace {

struct SignOpts {
    std::string hash = "sha256", key, cert, module, dest;
};

Result<int> run_sign(const SignOpts& o) {
    const std::string image = UDRV_TRY(read_module_file(o.module));
    auto signed_file = UDRV_TRY(modsig::sign(std::as_bytes(std::span(image)), o.hash, o.key, o.cert, o.module));
    // In place by default, as sign-file does: written beside it, then renamed over it.
    const std::filesystem::path dest = o.dest.empty() ? std::filesystem::path(o.module) : std::filesystem::path(o.dest);
    const std::filesystem::path tmp = dest.string() + fmt::format(".sign-{}", ::getpid());
    if (auto w = write_file(tmp, signed_file); !w) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
        return std::unexpected(w.error());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, dest, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        return fail(EIO, "{}: cannot replace it with the signed file: {}", dest.string(), ec.message());
    }
    return 0;
}

struct VerifyOpts {
    std::vector<std::string> files;
    std::string keyring;
};

Result<int> run_verify(const VerifyOpts& o) {
    std::filesystem::path dir = o.keyring;
    if (dir.empty()) dir = UDRV_TRY(modsig::settings_from_environment()).keyring_dir;
    auto ring = UDRV_TRY(modsig::Keyring::load(dir));
    int rc = 0;
    for (const auto& f : o.files) {
        auto image = read_module_file(f);
        if (!image) {
            rc = report(image.error());
            continue;
        }
        auto info = modsig::verify(std::as_bytes(std::span(*image)), ring, f);
        if (!info) {
            rc = report(info.error());
            continue;
        }
        print(fmt::format("{}: good signature by '{}' (key {}, {})\n", f, info->signer, info->sig_key, info->sig_hashalgo));
    }
    return rc;
}

}  // namespace

void add_sign(CLI::App& app, Commands& c) {
    auto o = std::make_shared<SignOpts>();
    auto* sign = app.add_subcommand("sign", "Sign a module file as the kernel's scripts/sign-file does (PKCS#7, appended)");
    sign->add_option("hash", o->hash, "Digest: sha256, sha384, sha512, ...")->required();
    sign->add_option("key", o->key, "Private key (PEM or DER)")->required()->check(CLI::ExistingFile);
    sign->add_option("cert", o->cert, "Its X.509 certificate (PEM or DER)")->required()->check(CLI::ExistingFile);
    sign->add_option("module", o->module, "The module file")->required()->check(CLI::ExistingFile);
    sign->add_option("dest", o->dest, "Where to write the signed module (default: replace MODULE)");
    c.add(sign, [o] { return run_sign(*o); });

    auto v = std::make_shared<VerifyOpts>();
    auto* verify = app.add_subcommand("verify", "Check module files' signatures against the trusted certificates");
    verify->add_option("files", v->files, "Module files")->required();
    verify->add_option("--keyring", v->keyring, "Directory of trusted certificates (default: $UDRV_KEYRING or /etc/udrv/keys)");
    c.add(verify, [v] { return run_verify(*v); });
}

}  // namespace udrv::tools
