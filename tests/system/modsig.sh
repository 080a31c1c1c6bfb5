#!/usr/bin/env bash
# Signed modules interoperate with the kernel's tools: a module signed by the kernel's scripts/sign-file
# (Debian's linux-kbuild) is described by udrv modinfo and verified and loaded by udrv; one signed by
# udrv sign is byte-for-byte what sign-file makes (RSA signatures are deterministic) and its signature
# verifies with `openssl cms -verify`. Then the policies through the tool: enforce refuses an unsigned,
# a changed and an untrusted module with the reason; permissive loads them and taints.
# Usage: modsig.sh UDRV_TOOL MODULE_DIR
set -uo pipefail
udrv=$(realpath "$1"); mods=$(realpath "$2")
. "$(dirname "$0")/check-lib.sh"
signfile=$(ls /usr/lib/linux-kbuild-*/scripts/sign-file 2>/dev/null | sort -V | tail -1)
[ -x "$signfile" ] || { echo "FAIL: the kernel's sign-file is missing: scripts/install-deps.sh installs linux-kbuild-6.1"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

# A key as the kernel's build makes one (certs/default_x509.genkey).
mkkey() {  # mkkey NAME CN
  cat > "$1.genkey" <<GENKEY
[ req ]
default_bits = 2048
distinguished_name = req_distinguished_name
prompt = no
string_mask = utf8only
x509_extensions = myexts
[ req_distinguished_name ]
CN = $2
[ myexts ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
GENKEY
  openssl req -new -nodes -utf8 -sha256 -days 3650 -batch -x509 -config "$1.genkey" -outform PEM -out "$1.pem" -keyout "$1.pem" 2>/dev/null
}
mkkey build "udrv test build key" && mkkey other "someone else" || { echo "FAIL: openssl cannot make keys"; exit 1; }
mkdir keyring && openssl x509 -in build.pem -out keyring/build.crt
serial=$(openssl x509 -in build.pem -noout -serial | sed 's/^serial=//; s/\(..\)/\1:/g; s/:$//')
cp "$mods/udrv_sample_hello.so" plain.so

check "sign-file signs a udrv module" 0 "" "$signfile" sha256 build.pem build.pem plain.so by-kernel.so
check "udrv modinfo shows a sign-file signature as the kernel's modinfo does" 0 \
  "sig_id: +PKCS#7.*signer: +udrv test build key.*sig_key: +$serial.*sig_hashalgo: +sha256" \
  sh -c "'$udrv' modinfo by-kernel.so | tr '\n' ' '"
check "udrv modinfo -F signer" 0 "^udrv test build key$" "$udrv" modinfo -F signer by-kernel.so
check "udrv verify accepts sign-file's signature" 0 "by-kernel.so: good signature by 'udrv test build key' \(key $serial, sha256\)" \
  "$udrv" verify --keyring keyring by-kernel.so
check "enforce: udrv loads the module sign-file signed" 0 "^udrv_sample_hello +[0-9]+ +0" \
  env UDRV_MODULE_SIG=enforce UDRV_KEYRING=keyring "$udrv" --standalone insmod ./by-kernel.so

check "udrv sign writes what sign-file writes, byte for byte" 0 "" sh -c "
  '$udrv' sign sha256 build.pem build.pem plain.so by-udrv.so && cmp by-kernel.so by-udrv.so"
# The parts of udrv's signed file: module | signature | 12-byte trailer | 28-byte magic.
total=$(stat -c %s by-udrv.so); plain=$(stat -c %s plain.so)
siglen=$((total - plain - 40))
head -c "$plain" by-udrv.so > content.bin
tail -c +$((plain + 1)) by-udrv.so | head -c "$siglen" > sig.der
check "openssl cms -verify accepts udrv sign's signature over the module bytes" 0 "Verification successful|CMS Verification successful" \
  openssl cms -verify -binary -inform DER -in sig.der -content content.bin -certfile build.pem -CAfile build.pem -purpose any -out /dev/null
check "the trailer says the signature's length, big-endian, and ends in the kernel's magic" 0 "^0*$(printf '%x' "$siglen")~Module signature appended~$" \
  sh -c "tail -c 32 by-udrv.so | head -c 4 | od -An -tx1 | tr -d ' \n'; tail -c 28 by-udrv.so | tr -d '\n'"
check "udrv sign refuses a signed module" 1 "is signed already" "$udrv" sign sha256 build.pem build.pem by-udrv.so again.so
check "udrv sign with a key that is not the certificate's says so" 1 "does the key belong to the certificate" \
  "$udrv" sign sha256 other.pem build.pem plain.so wrong.so
"$udrv" sign sha256 other.pem other.pem plain.so by-other.so
cp by-udrv.so changed.so && printf 'X' | dd of=changed.so bs=1 seek=200 conv=notrunc status=none

# The policies, through the tool's loader.
enforce() { env UDRV_MODULE_SIG=enforce UDRV_KEYRING=keyring "$udrv" --standalone insmod "$@"; }
check "enforce refuses an unsigned module, saying how to sign it" 1 "plain.so is not signed \(sign it with udrv sign or the kernel's scripts/sign-file\)" enforce ./plain.so
check "enforce refuses a module changed after signing" 1 "does not match the module's bytes.*changed after signing" enforce ./changed.so
check "enforce refuses a module signed by a certificate not in the keyring" 1 "signed by 'someone else'.*not in the keyring" enforce ./by-other.so
check "enforce without a keyring says where it looked" 1 "nowhere is not a directory" \
  env UDRV_MODULE_SIG=enforce UDRV_KEYRING=nowhere "$udrv" --standalone insmod ./by-udrv.so
check "permissive loads an unsigned module and taints the process (E)" 0 "plain.so is not signed.*loading it anyway.*tainted \(E\)" \
  sh -c "env UDRV_MODULE_SIG=permissive UDRV_KEYRING=keyring '$udrv' --standalone insmod ./plain.so 2>&1 | tr '\n' ' '"
check "a policy that is not one says which are" 1 "module signature policy 'strict': one of off, permissive, enforce" \
  env UDRV_MODULE_SIG=strict "$udrv" --standalone insmod ./plain.so
summary
