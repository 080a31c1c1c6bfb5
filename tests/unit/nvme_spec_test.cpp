// The NVMe driver's reading of what the device tells it: identify data, doorbell stride, status codes.
// The device is untrusted: every value below is one a broken or hostile controller could hand over.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <fstream>

#include "udrv/nvme_spec.hpp"
#include "nvme_json.hpp"

using namespace udrv::nvme;

namespace {

struct IdentifyPage {
    std::vector<std::byte> bytes = std::vector<std::byte>(4096);
    template <typename T>
    IdentifyPage& put(std::size_t off, T v) {
        std::memcpy(bytes.data() + off, &v, sizeof v);
        return *this;
    }
    IdentifyPage& text(std::size_t off, std::size_t len, const char* s) {
        std::memset(bytes.data() + off, ' ', len);
        std::memcpy(bytes.data() + off, s, std::strlen(s));
        return *this;
    }
};

// A namespace as QEMU reports one: formats 0-7, the current one `format`.
IdentifyPage namespace_page(std::uint64_t blocks, std::uint8_t format = 0) {
    IdentifyPage p;
    p.put<std::uint64_t>(0, blocks).put<std::uint64_t>(8, blocks).put<std::uint64_t>(16, blocks);
    p.put<std::uint8_t>(25, 7).put<std::uint8_t>(26, format);
    const std::uint32_t formats[8] = {9u << 16, 9u << 16 | 8, 9u << 16 | 16, 9u << 16 | 64,
                                      12u << 16, 12u << 16 | 8, 12u << 16 | 16, 12u << 16 | 64};
    for (unsigned f = 0; f < 8; ++f) p.put<std::uint32_t>(128 + 4 * f, formats[f]);
    return p;
}

IdentifyPage controller_page() {
    IdentifyPage p;
    p.put<std::uint16_t>(0, 0x1b36).put<std::uint16_t>(2, 0x1af4);
    p.text(4, 20, "udrv0001").text(24, 40, "QEMU NVMe Ctrl").text(64, 8, "7.2.22");
    p.put<std::uint8_t>(77, 7).put<std::uint16_t>(78, 0);
    p.put<std::uint16_t>(256, 0x10a).put<std::uint8_t>(512, 0x66).put<std::uint8_t>(513, 0x44);
    p.put<std::uint32_t>(516, 256).put<std::uint16_t>(520, 0x15d).put<std::uint8_t>(525, 1);
    return p;
}

}  // namespace

TEST(NvmeIdentify, ControllerFieldsAndTransferSize) {
    ControllerInfo info;
    ASSERT_TRUE(parse_identify_controller(controller_page().bytes, info, 512 * 1024));
    EXPECT_EQ(info.vid, 0x1b36);
    EXPECT_EQ(info.serial, "udrv0001");
    EXPECT_EQ(info.model, "QEMU NVMe Ctrl");
    EXPECT_EQ(info.firmware, "7.2.22");
    EXPECT_EQ(info.mdts, 7);
    EXPECT_EQ(info.max_transfer, 512u * 1024);  // MDTS 7: 4 KiB << 7, also the driver's cap
    EXPECT_EQ(info.namespaces, 256u);
    EXPECT_EQ(info.oncs, 0x15d);
}

TEST(NvmeIdentify, MdtsBelowTheCapAndNoLimit) {
    ControllerInfo info;
    ASSERT_TRUE(parse_identify_controller(controller_page().put<std::uint8_t>(77, 1).bytes, info, 512 * 1024));
    EXPECT_EQ(info.max_transfer, 8192u);
    ASSERT_TRUE(parse_identify_controller(controller_page().put<std::uint8_t>(77, 0).bytes, info, 512 * 1024));
    EXPECT_EQ(info.max_transfer, 512u * 1024);  // 0: no limit from the controller
    ASSERT_TRUE(parse_identify_controller(controller_page().put<std::uint8_t>(77, 255).bytes, info, 512 * 1024));
    EXPECT_EQ(info.max_transfer, 512u * 1024);  // a huge MDTS neither overflows nor lifts the cap
}

TEST(NvmeIdentify, StringsKeepOnlyPrintableAscii) {
    ControllerInfo info;
    auto page = controller_page();
    page.put<std::uint8_t>(4, 0x1b).put<std::uint8_t>(5, 0xff).put<std::uint8_t>(6, '\n');
    ASSERT_TRUE(parse_identify_controller(page.bytes, info, 512 * 1024));
    EXPECT_EQ(info.serial, "???v0001");  // a terminal escape from the device is not printed as one
}

TEST(NvmeIdentify, ControllerNeedingLargerQueueEntriesIsRefused) {
    ControllerInfo info;
    auto r = parse_identify_controller(controller_page().put<std::uint8_t>(512, 0x77).bytes, info, 512 * 1024);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ENOTSUP);
    EXPECT_NE(r.error().message().find("128-byte SQ"), std::string::npos) << r.error().message();
}

TEST(NvmeIdentify, ShortIdentifyDataIsRefused) {
    ControllerInfo info;
    std::vector<std::byte> short_page(100);
    EXPECT_EQ(parse_identify_controller(short_page, info, 512 * 1024).error().code(), EINVAL);
    EXPECT_EQ(parse_identify_namespace(1, short_page, 512 * 1024).error().code(), EINVAL);
}

TEST(NvmeIdentify, NamespaceWith512And4096ByteBlocks) {
    auto ns = parse_identify_namespace(1, namespace_page(32768).bytes, 512 * 1024);
    ASSERT_TRUE(ns) << ns.error().message();
    EXPECT_EQ(ns->nsid, 1u);
    EXPECT_EQ(ns->size, 32768u);
    EXPECT_EQ(ns->block_size(), 512u);
    EXPECT_EQ(ns->lba_formats.size(), 8u);
    ns = parse_identify_namespace(2, namespace_page(8192, 4).bytes, 512 * 1024);
    ASSERT_TRUE(ns) << ns.error().message();
    EXPECT_EQ(ns->block_size(), 4096u);
}

TEST(NvmeIdentify, BadNamespaceDataIsAnErrorThatSaysWhat) {
    auto expect = [](const IdentifyPage& p, int code, const char* says, std::uint32_t max_transfer = 512 * 1024) {
        auto r = parse_identify_namespace(3, p.bytes, max_transfer);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), code);
        EXPECT_NE(r.error().message().find(says), std::string::npos) << r.error().message();
    };
    expect(namespace_page(0), EPROTO, "size of 0 blocks");
    expect(namespace_page(1ull << 60), EPROTO, "NSZE");
    // Formatted with format 9 while NLBAF lists 8: the table entry would be read out of bounds.
    expect(namespace_page(100, 9), EPROTO, "LBA format 9, but only 8 are listed");
    expect(namespace_page(100).put<std::uint32_t>(128, 3u << 16), EPROTO, "2^3 bytes");
    expect(namespace_page(100).put<std::uint32_t>(128, 40u << 16), EPROTO, "2^40 bytes");
    expect(namespace_page(100, 1), ENOTSUP, "8 bytes of metadata");
    // 64 KiB blocks on a controller that moves 8 KiB per command: no command could read one block (the
    // driver used to divide by the blocks per command, 0).
    expect(namespace_page(100).put<std::uint32_t>(128, 16u << 16), ENOTSUP, "at most 8192 bytes per command", 8192);
}

TEST(NvmeDoorbells, QueuesWhoseDoorbellsFitTheWindow) {
    // Stride 4 (CAP.DSTRD 0): a page of doorbells holds 512 queues' pairs, the admin queue's included.
    EXPECT_EQ(io_queues_in_window(4, kBarMin), 511);
    EXPECT_EQ(io_queues_in_window(64, kBarMin), 31);
    EXPECT_EQ(io_queues_in_window(128, kBarMin), 15);  // would have put queue 16's doorbells past the window
    EXPECT_EQ(io_queues_in_window(2048, kBarMin), 0);  // only the admin queue's
    EXPECT_EQ(io_queues_in_window(4096, kBarMin), -1);
    EXPECT_EQ(io_queues_in_window(4u << 15, kBarMin), -1);  // the largest stride CAP.DSTRD can give
    // The shadow doorbell page has the same layout: the last queue that fits has its CQ entry in it.
    for (std::uint32_t stride = 4; stride <= 2048; stride *= 2) {
        const int q = io_queues_in_window(stride, kBarMin);
        EXPECT_LE((2 * std::size_t(q) + 1) * stride + 4, kShadowBufferBytes) << stride;
    }
}

TEST(NvmeStatus, NamesAndErrnos) {
    EXPECT_EQ(status_name(0x80), "LBA Out of Range (SCT 0h Generic, SC 80h)");
    EXPECT_EQ(status_errno(0x80), EINVAL);
    EXPECT_EQ(status_name(0x4281), "Unrecovered Read Error (SCT 2h Media/Data Integrity, SC 81h, do not retry)");
    EXPECT_EQ(status_errno(0x281), EIO);
    EXPECT_EQ(status_errno(0x81), ENOSPC);
    EXPECT_EQ(status_name(0x7ff), "Unknown status (SCT 7h Vendor Specific, SC ffh)");
}

// Every field of Identify Controller and Identify Namespace, named, ordered and valued as nvme-cli 2.4
// prints them: the raw pages QEMU's controllers returned, and nvme-cli's JSON of the same pages.
namespace {
std::vector<std::byte> fixture_bytes(const std::string& rel) {
    std::ifstream in(std::string(UDRV_FIXTURE_DIR) + "/nvme/" + rel, std::ios::binary);
    std::vector<char> b((std::istreambuf_iterator<char>(in)), {});
    std::vector<std::byte> out(b.size());
    std::memcpy(out.data(), b.data(), b.size());
    return out;
}
nlohmann::ordered_json fixture_json(const std::string& rel) {
    std::ifstream in(std::string(UDRV_FIXTURE_DIR) + "/nvme/" + rel);
    return nlohmann::ordered_json::parse(in);
}
}  // namespace

TEST(NvmeIdentifyJson, ControllerMatchesNvmeCliKeyForKey) {
    for (std::string c : {"qemu-single", "qemu-two-ns"}) {
        auto d = dump_identify_controller(fixture_bytes(c + "/id-ctrl.bin"));
        ASSERT_TRUE(d) << d.error().message();
        const auto ours = udrv::tools::identify_json(*d), theirs = fixture_json(c + "/id-ctrl.json");
        EXPECT_EQ(ours, theirs) << c << "\nudrv:     " << ours.dump() << "\nnvme-cli: " << theirs.dump();
        EXPECT_EQ(ours.size(), 86u);
    }
}

TEST(NvmeIdentifyJson, NamespaceMatchesNvmeCliKeyForKey) {
    for (std::string n : {"qemu-single/id-ns1", "qemu-two-ns/id-ns1", "qemu-two-ns/id-ns2"}) {
        auto d = dump_identify_namespace(fixture_bytes(n + ".bin"));
        ASSERT_TRUE(d) << d.error().message();
        const auto ours = udrv::tools::identify_json(*d), theirs = fixture_json(n + ".json");
        EXPECT_EQ(ours, theirs) << n << "\nudrv:     " << ours.dump() << "\nnvme-cli: " << theirs.dump();
    }
}

TEST(NvmeIdentifyJson, ShortPagesAreRefused) {
    std::vector<std::byte> half(2048);
    EXPECT_EQ(dump_identify_controller(half).error().code(), EINVAL);
    EXPECT_EQ(dump_identify_namespace(half).error().code(), EINVAL);
}
