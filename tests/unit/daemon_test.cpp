// udrvd's parts that need no device: its configuration (TOML and JSON, every mistake with its line),
// the JSON-RPC framing and request checks, the server with several clients and answers given later,
// the control channel to hosts, and the kernel's hot-plug messages.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <atomic>
#include <filesystem>
#include <thread>

#include "channel.hpp"
#include "config.hpp"
#include "poller.hpp"
#include "rpc_server.hpp"
#include "uevent.hpp"
#include "udrv/rpc.hpp"
#include "udrv/toml.hpp"

namespace {

using namespace udrv::daemon;
using nlohmann::json;

constexpr const char* kToml = R"(# a comment
[daemon]
group = "root"
watchdog_ms = 3000

[[module]]
name = "udrv_nvme"
params = { io_timeout_ms = 2000, verbose = true }

[[device]]
address = "00:04.0"
driver = "udrv_nvme"
host = "storage"

[[device]]
address = "0000:00:07.0"
on_stop = "vfio"

[[platform]]
description = "/etc/udrv/ramdisk.toml"

[nvmf]
discovery = ["127.0.0.1:8009"]
cpus = [1, 0]
poll_us = 500
device_interrupts = true

[[nvmf_subsystem]]
nqn = "nqn.2026-12.io.udrv:disk1"
serial = "UDRV0001"
hosts = ["nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"]
namespaces = ["nvme0n1", { device = "nvme1n1", nsid = 5 }, "ram0"]
listen = ["0.0.0.0:4420"]
)";

TEST(DaemonConfig, TomlHoldsModulesDevicesAndPlatforms) {
    auto c = parse_config(kToml, "udrvd.toml");
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->group, "root");
    EXPECT_EQ(c->watchdog_ms, 3000u);
    EXPECT_EQ(c->restart_limit, 5u);
    ASSERT_EQ(c->modules.size(), 1u);
    EXPECT_EQ(c->modules[0].params, (std::vector<std::string>{"io_timeout_ms=2000", "verbose=y"}));
    ASSERT_EQ(c->devices.size(), 2u);
    EXPECT_EQ(c->devices[0].address, "0000:00:04.0");  // lspci's short form, written in full
    EXPECT_EQ(c->devices[0].host, "storage");
    EXPECT_TRUE(c->devices[0].return_to_kernel);
    EXPECT_FALSE(c->devices[1].return_to_kernel);
    ASSERT_EQ(c->platforms.size(), 1u);
    ASSERT_EQ(c->nvmf_subsystems.size(), 1u);
    const auto& n = c->nvmf_subsystems[0];
    EXPECT_EQ(n.serial, "UDRV0001");
    EXPECT_EQ(n.model, "udrv NVMe/TCP");  // the default
    ASSERT_EQ(n.namespaces.size(), 3u);
    EXPECT_EQ(n.namespaces[0].nsid, 1u);
    EXPECT_EQ(n.namespaces[1].nsid, 5u);
    EXPECT_EQ(n.namespaces[2].nsid, 6u);  // after the one before it
    EXPECT_EQ(c->nvmf_discovery, std::vector<std::string>{"127.0.0.1:8009"});
    EXPECT_EQ(c->nvmf_cpus, (std::vector<int>{1, 0}));
    EXPECT_EQ(c->nvmf_poll_us, 500u);
    EXPECT_TRUE(c->nvmf_device_interrupts);
}

TEST(DaemonConfig, SavedAndReadBackInEitherLanguageIsTheSame) {
    auto c = parse_config(kToml, "udrvd.toml");
    ASSERT_TRUE(c);
    for (const std::string& text : {config_to_toml(*c), config_to_json(*c).dump(2)}) {
        auto back = parse_config(text, "saved");
        ASSERT_TRUE(back) << back.error().message() << "\n" << text;
        EXPECT_EQ(config_to_json(*back), config_to_json(*c)) << text;
    }
    auto dir = std::filesystem::temp_directory_path() / ("udrvd-cfg-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    ASSERT_TRUE(save_config(*c, dir / "a.json"));
    ASSERT_TRUE(save_config(*c, dir / "a.toml"));
    EXPECT_EQ(config_to_json(*load_config(dir / "a.json")), config_to_json(*c));
    EXPECT_EQ(config_to_json(*load_config(dir / "a.toml")), config_to_json(*c));
    std::filesystem::remove_all(dir);
}

// [nvmf] left out means the target's defaults (nvmf::TargetOptions); a saved configuration names only
// what differs from them, so turning polling or device interrupts off survives a save.
TEST(DaemonConfig, NvmfDefaultsAreTheTargetsAndWhatDiffersIsSaved) {
    auto d = parse_config("", "empty");
    ASSERT_TRUE(d) << d.error().message();
    const udrv::nvmf::TargetOptions target;
    EXPECT_EQ(d->nvmf_poll_us, target.poll_us);
    EXPECT_EQ(d->nvmf_device_interrupts, target.device_interrupts);
    EXPECT_EQ(config_to_toml(*d).find("[nvmf]"), std::string::npos);
    auto off = parse_config("[nvmf]\npoll_us = 0\ndevice_interrupts = false\n", "off");
    ASSERT_TRUE(off) << off.error().message();
    EXPECT_EQ(off->nvmf_poll_us, 0u);
    EXPECT_FALSE(off->nvmf_device_interrupts);
    for (const std::string& text : {config_to_toml(*off), config_to_json(*off).dump(2)}) {
        auto back = parse_config(text, "saved");
        ASSERT_TRUE(back) << back.error().message() << "\n" << text;
        EXPECT_EQ(back->nvmf_poll_us, 0u) << text;
        EXPECT_FALSE(back->nvmf_device_interrupts) << text;
    }
}

TEST(DaemonConfig, EveryMistakeNamesItsLine) {
    auto err = [](std::string_view text) {
        auto c = parse_config(text, "f");
        return c ? std::string("(accepted)") : c.error().message();
    };
    EXPECT_EQ(err("[[device]]\naddress = \"0000:00:04.0\"\ndriverr = \"x\"\n"),
              "f:3: unknown key 'driverr' in [[device]] (allowed: address, driver, host, on_stop)");
    EXPECT_NE(err("[[device]]\n\naddress = \"00:4\"\n").find("f:3: "), std::string::npos);
    EXPECT_EQ(err("[[device]]\naddress = \"0000:00:04.0\"\non_stop = \"later\"\n"),
              "f:3: on_stop is \"kernel\" (give the device back to its kernel driver) or \"vfio\" (leave it on vfio-pci)");
    EXPECT_NE(err("[daemon]\nwatchdog_ms = 10\n").find("f:2: watchdog_ms must be from 500"), std::string::npos);
    EXPECT_NE(err("[[device]]\naddress = \"0000:00:04.0\"\n[[device]]\naddress = \"00:04.0\"\n").find("configured twice"), std::string::npos);
    EXPECT_NE(err("[[module]]\nname = \"x\"\nparams = [\"novalue\"]\n").find("f:3: "), std::string::npos);
    EXPECT_NE(err("[[nvmf_subsystem]]\nnqn = \"disk1\"\n").find("f:2: NQN 'disk1' does not start with 'nqn.'"), std::string::npos);
    EXPECT_NE(err("[[nvmf_subsystem]]\nnqn = \"nqn.2026-12.io.udrv:a\"\nlisten = [\"host:4420\"]\n").find("f:3: "), std::string::npos);
    EXPECT_NE(err("[[nvmf_subsystem]]\nnqn = \"nqn.2026-12.io.udrv:a\"\nnamespaces = [\"a\", { device = \"b\", nsid = 1 }]\n").find("namespace 1 twice"),
              std::string::npos);
    EXPECT_EQ(err("[nvmf]\ncpus = [0, 0]\n"), "f:2: cpus in [nvmf]: CPU 0 is listed twice");
    EXPECT_EQ(err("[nvmf]\ncpus = 3\n"), "f:2: cpus in [nvmf] is an array of CPU numbers");
    EXPECT_EQ(err("[nvmf]\ndevice_interrupts = 1\n"), "f:2: 'device_interrupts' in [nvmf] must be true or false");
    EXPECT_NE(err("[nvmf]\ncpus = [-1]\n").find("f:2: cpus in [nvmf]: CPU numbers from 0 to "), std::string::npos);
    EXPECT_NE(err("[nvmf]\npoll_us = 2000000\n").find("f:2: poll_us must be from 0 to 1000000"), std::string::npos);
    // JSON: the same checks, with lines too.
    EXPECT_EQ(err("{\n  \"device\": [\n    {\"address\": \"0000:00:04.0\",\n     \"bogus\": 1}\n  ]\n}\n"),
              "f:4: unknown key 'bogus' in [[device]] (allowed: address, driver, host, on_stop)");
    EXPECT_NE(err("{\n  \"daemon\": {\n    \"group\": null\n  }\n}").find("f:3:"), std::string::npos);
    EXPECT_NE(err("{\n  \"module\": [,]\n}").find("f:2:"), std::string::npos);
    EXPECT_NE(err("{\"daemon\": {}, \"daemon\": {}}").find("given twice"), std::string::npos);
}

TEST(RpcFraming, FindsWhereEachMessageEnds) {
    using udrv::rpc::find_message_end;
    EXPECT_EQ(*find_message_end("  {\"a\": 1}{\"b\"").value(), 10u);
    EXPECT_FALSE(*find_message_end("{\"a\": \"}\\\"{\""));  // braces and an escaped quote inside a string: not done yet
    EXPECT_EQ(*find_message_end("{\"a\": \"}\\\"{\"}").value(), 13u);
    EXPECT_EQ(*find_message_end("[1, [2, {\"x\": []}]]\n").value(), 19u);
    EXPECT_FALSE(*find_message_end("   "));
    EXPECT_FALSE(find_message_end("hello"));              // not a JSON-RPC message at all
    EXPECT_FALSE(find_message_end(std::string(100, '[')));  // nests too deep
    std::string huge = "{\"a\": \"" + std::string(udrv::rpc::kMaxMessage, 'x');
    EXPECT_FALSE(find_message_end(huge));

    udrv::rpc::MessageReader r;
    r.feed("{\"id\": 1}  [");
    EXPECT_EQ(**r.next(), "{\"id\": 1}");
    EXPECT_FALSE(*r.next());
    r.feed("{}]");
    EXPECT_EQ(**r.next(), "  [{}]");
    EXPECT_TRUE(r.empty());
}

TEST(RpcFraming, RequestsAreChecked) {
    using udrv::rpc::parse_request;
    auto ok = parse_request(json::parse(R"({"jsonrpc": "2.0", "method": "lsmod", "id": 7})"));
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->method, "lsmod");
    EXPECT_TRUE(ok->has_id);
    auto note = parse_request(json::parse(R"({"jsonrpc": "2.0", "method": "x", "params": [1]})"));
    ASSERT_TRUE(note);
    EXPECT_FALSE(note->has_id);
    for (const char* bad : {R"({"method": "x"})", R"({"jsonrpc": "2.0", "method": 5})", R"({"jsonrpc": "2.0", "method": "x", "params": 3})",
                            R"({"jsonrpc": "2.0", "method": "x", "id": {}})", "[]"}) {
        auto r = parse_request(json::parse(bad));
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error()["code"], udrv::rpc::invalid_request) << bad;
    }
}

// A server on a socket, its loop on a thread, and clients calling it.
struct ServerFixture : ::testing::Test {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / ("udrvd-rpc-" + std::to_string(::getpid()));
    std::filesystem::path sock = dir / "s.sock";
    std::unique_ptr<Poller> poller;
    std::unique_ptr<RpcServer> server;
    std::atomic<bool> stop{false};
    std::thread loop;
    std::vector<Responder> later;  // answered by the "release" method

    void SetUp() override {
        std::filesystem::create_directories(dir);
        poller = std::make_unique<Poller>(*Poller::create());
        auto s = RpcServer::listen(*poller, sock, std::nullopt);
        ASSERT_TRUE(s) << s.error().message();
        server = std::move(*s);
        server->add("echo", Access::read, [](const udrv::rpc::Request& q, const Peer&, Responder r) { r.result(q.params); });
        server->add("fail", Access::read, [](const udrv::rpc::Request&, const Peer&, Responder r) { r.error(udrv::Error(ENODEV, "gone")); });
        server->add("wait", Access::read, [this](const udrv::rpc::Request&, const Peer&, Responder r) { later.push_back(r); });
        server->add("release", Access::change, [this](const udrv::rpc::Request&, const Peer&, Responder r) {
            for (auto& l : later) l.result("released");
            later.clear();
            r.result(true);
        });
        loop = std::thread([this] {
            while (!stop) (void)poller->run_once(std::chrono::milliseconds(20));
        });
    }
    void TearDown() override {
        stop = true;
        loop.join();
        server.reset();
        std::filesystem::remove_all(dir);
    }
};

TEST_F(ServerFixture, AnswersResultsErrorsAndUnknownMethods) {
    auto c = udrv::rpc::Client::connect(sock);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(*c->call("echo", {{"x", 1}}), (json{{"x", 1}}));
    auto e = c->call("fail");
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code(), ENODEV);
    EXPECT_EQ(e.error().message(), "gone");
    auto m = c->call("nope");
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message().find("no method 'nope'"), std::string::npos);
}

// One client waits for an answer that comes later; another is served meanwhile, then releases it.
TEST_F(ServerFixture, TwoClientsAtOnceAndAnAnswerGivenLater) {
    std::optional<udrv::Result<json>> waited;
    std::atomic<bool> answered{false};
    std::thread first([&] {
        auto c = udrv::rpc::Client::connect(sock);
        waited = c->call("wait", nullptr, std::chrono::seconds(10));
        answered = true;
    });
    auto c2 = udrv::rpc::Client::connect(sock);
    ASSERT_TRUE(c2);
    // Served while the first one waits; "release" answers the waiter once the server holds it.
    for (int i = 0; i < 2000 && !answered; ++i) {
        EXPECT_EQ(*c2->call("echo", {{"i", i}}), (json{{"i", i}}));
        EXPECT_EQ(*c2->call("release"), json(true));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    first.join();
    ASSERT_TRUE(waited && *waited);
    EXPECT_EQ(**waited, "released");
}

TEST_F(ServerFixture, GarbageGetsAParseErrorAndTheConnectionCloses) {
    udrv::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, sock.c_str());
    ASSERT_EQ(::connect(fd.get(), static_cast<sockaddr*>(static_cast<void*>(&a)), sizeof a), 0);
    ASSERT_EQ(::send(fd.get(), "hello\n", 6, 0), 6);
    char buf[512];
    std::string got;
    for (ssize_t n; (n = ::recv(fd.get(), buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<std::size_t>(n));
    EXPECT_NE(got.find("-32700"), std::string::npos) << got;
}

TEST(RpcAccess, OnlyRootAndTheGroupMayChangeState) {
    EXPECT_TRUE(is_privileged(1, 0, 0, std::nullopt));
    EXPECT_FALSE(is_privileged(1, 65534, 65534, std::nullopt));
    EXPECT_FALSE(is_privileged(1, 65534, 65534, 4242));
    EXPECT_TRUE(is_privileged(1, 65534, 4242, 4242));  // its primary group
}

TEST(HostChannel, CarriesJsonObjectsAndSaysWhenTheOtherSideIsGone) {
    auto p = Channel::pair();
    ASSERT_TRUE(p);
    auto& [a, b] = *p;
    ASSERT_TRUE(a.send({{"type", "ping"}, {"seq", 3}}));
    auto m = b.receive_wait(1000);
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["seq"], 3);
    EXPECT_FALSE(*b.receive());  // nothing more: not an error
    ASSERT_EQ(::send(a.fd(), "[1]", 3, 0), 3);
    EXPECT_EQ(b.receive().error().code(), EPROTO);  // not an object with a type
    a.close();
    EXPECT_EQ(b.receive().error().code(), ECONNRESET);
}

TEST(Uevents, KernelMessagesAreParsedAndOthersIgnored) {
    const char msg[] = "remove@/devices/pci0000:00/0000:00:04.0\0ACTION=remove\0DEVPATH=/devices/pci0000:00/0000:00:04.0\0"
                       "SUBSYSTEM=pci\0PCI_SLOT_NAME=0000:00:04.0\0SEQNUM=1234";
    auto e = parse_uevent({msg, sizeof msg - 1});
    ASSERT_TRUE(e);
    EXPECT_EQ(e->action, "remove");
    EXPECT_EQ(e->subsystem, "pci");
    EXPECT_EQ(e->pci_slot, "0000:00:04.0");
    const char udev[] = "libudev\0\xfe\xed\xca\xfe";
    EXPECT_FALSE(parse_uevent({udev, sizeof udev - 1}));
    const char liar[] = "add@/x\0ACTION=remove\0SUBSYSTEM=pci";  // header and ACTION disagree
    EXPECT_FALSE(parse_uevent({liar, sizeof liar - 1}));
    EXPECT_FALSE(parse_uevent({msg, 5}));
}

TEST(PollerTimers, RunInOrderAndCanBeCancelled) {
    auto p = Poller::create();
    ASSERT_TRUE(p);
    std::vector<int> ran;
    p->after(std::chrono::milliseconds(20), [&] { ran.push_back(2); });
    p->after(std::chrono::milliseconds(5), [&] { ran.push_back(1); });
    auto id = p->after(std::chrono::milliseconds(10), [&] { ran.push_back(99); });
    p->cancel(id);
    for (int i = 0; i < 20 && ran.size() < 2; ++i) ASSERT_TRUE(p->run_once(std::chrono::milliseconds(10)));
    EXPECT_EQ(ran, (std::vector<int>{1, 2}));
}

}  // namespace

// What the kernel's ublk descriptors say is checked before the device is touched.
#include <linux/ublk_cmd.h>

#include "udrv/ublk.hpp"

namespace {

TEST(UblkRequests, OnlyWholeBlocksInsideTheDeviceAndTheBuffer) {
    udrv::ublk::Params p;
    p.block_size = 4096;
    p.blocks = 1000;  // 8000 sectors
    p.max_io_bytes = 64 << 10;
    p.discard = true;
    using udrv::ublk::Request;
    auto ok = [&](Request r) { return static_cast<bool>(udrv::ublk::check_request(r, p)); };
    EXPECT_TRUE(ok({UBLK_IO_OP_READ, 0, 8, 0}));
    EXPECT_TRUE(ok({UBLK_IO_OP_WRITE, 0, 128, 7872}));  // 64 KiB ending at the last sector
    EXPECT_FALSE(ok({UBLK_IO_OP_WRITE, 0, 136, 7864}));  // more than the request buffer
    EXPECT_FALSE(ok({UBLK_IO_OP_READ, 0, 16, 7992}));    // past the end
    EXPECT_FALSE(ok({UBLK_IO_OP_READ, 0, 8, UINT64_MAX - 7}));  // wrapping
    EXPECT_FALSE(ok({UBLK_IO_OP_READ, 0, 4, 0}));        // half a block
    EXPECT_FALSE(ok({UBLK_IO_OP_READ, 0, 8, 4}));        // misaligned
    EXPECT_FALSE(ok({UBLK_IO_OP_READ, 0, 0, 0}));        // nothing
    EXPECT_TRUE(ok({UBLK_IO_OP_FLUSH, 0, 0, 0}));
    EXPECT_TRUE(ok({UBLK_IO_OP_DISCARD, 0, 800, 0}));   // discards may exceed the buffer
    EXPECT_FALSE(ok({UBLK_IO_OP_WRITE_ZEROES, 0, 8, 0}));  // not offered
    EXPECT_FALSE(ok({99, 0, 8, 0}));
    auto e = udrv::ublk::check_request({UBLK_IO_OP_READ, 0, 16, 7992}, p);
    EXPECT_EQ(e.error().code(), EPROTO);
    EXPECT_EQ(e.error().message(), "ublk request at sector 7992 of 16 sectors lies past the end (8000 sectors)");
}

}  // namespace
