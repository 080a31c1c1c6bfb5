// NVMe over TCP target: udrv block devices served to other machines with the standard fabric (NVMe-oF
// with the NVMe/TCP transport, TP 8000), so that Linux's `nvme connect` (nvme-tcp) uses them without
// linking anything. SPDK's nvmf_tgt and the kernel's nvmet-tcp are the models; the vocabulary is theirs:
// a subsystem (NQN, serial, model, the hosts allowed) holds namespaces, each backed by a block device, and
// is reached through listeners (address and port). A discovery subsystem lists the others.
//
// Threads: a target runs a few worker threads; a connection (an admin or I/O queue of a controller) is
// owned by one worker from accept to close, and each worker owns its own block queue of every namespace
// it serves, so an I/O command goes from the socket to the device's submission queue and back without a
// lock or a hand-off. Everything received is checked before use; a malformed PDU ends its connection with
// a C2HTermReq and touches nothing else (docs/nvmf.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "udrv/block.hpp"
#include "udrv/fileio.hpp"
#include "udrv/result.hpp"

namespace udrv::nvmf {

inline constexpr const char* kDiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";

struct Address {
    std::string host = "0.0.0.0";  ///< IPv4 or IPv6 literal
    std::uint16_t port = 4420;
    std::string text() const;      ///< "127.0.0.1:4420", "[::1]:4420"
};
/// "127.0.0.1:4420", "[::1]:4420", "0.0.0.0" (port 4420), ":4420" (any address).
Result<Address> parse_address(std::string_view text, std::uint16_t default_port = 4420);

struct NamespaceSpec {
    std::uint32_t nsid = 0;                 ///< 1..kMaxNamespaces
    std::string device;                     ///< the block device's name as users know it (for listings)
    std::shared_ptr<block::Device> backing; ///< what serves it (a block::Handle in udrvd's hosts)
};

struct SubsystemSpec {
    std::string nqn;
    std::string serial = "udrv0000";        ///< at most 20 ASCII characters
    std::string model = "udrv NVMe/TCP";    ///< at most 40
    bool allow_any_host = true;
    std::vector<std::string> hosts;         ///< host NQNs allowed when !allow_any_host
    std::vector<NamespaceSpec> namespaces;
};
inline constexpr std::uint32_t kMaxNamespaces = 1024;

/// Checks an NQN as the spec writes them: 1-223 bytes, "nqn.yyyy-mm.reverse.domain:..." or a UUID NQN.
Result<void> check_nqn(std::string_view nqn);

inline constexpr unsigned kMaxWorkers = 64;       ///< TargetOptions::threads, and CPUs in TargetOptions::cpus
inline constexpr unsigned kMaxPollUs = 1000000;  ///< TargetOptions::poll_us
/// The defaults of TargetOptions::poll_us and device_interrupts (also udrvd's [nvmf]): awake while
/// commands keep coming, asleep while the device works and when the connections are quiet.
inline constexpr unsigned kDefaultPollUs = 1000;
inline constexpr bool kDefaultDeviceInterrupts = true;

struct TargetOptions {
    unsigned threads = 2;                   ///< workers; connections are spread over them
    /// Workers pinned one per CPU (threads is then their number). A connection goes to the worker on the
    /// CPU its packets arrive on (SO_INCOMING_CPU: where nvmet-tcp would run it) when there is one, else
    /// round-robin. Empty: `threads` workers that the scheduler places.
    std::vector<int> cpus;
    /// A worker whose connections have been quiet for this long sleeps (epoll) until the next PDU;
    /// until then it keeps polling its sockets (and its devices), as SPDK's reactors do, so a command
    /// that arrives finds it awake, with no wake-up to pay (bench/README.md, NVMe/TCP). 0: it sleeps as
    /// soon as the device holds nothing. Polling burns the CPU while commands keep coming: give the
    /// target CPUs of its own (`cpus`), away from the applications and the initiator. An idle target
    /// costs nothing either way.
    unsigned poll_us = kDefaultPollUs;
    /// Wait for the devices by interrupt: a worker whose commands are all at the device, and whose
    /// connections are quiet (poll_us), sleeps (epoll, with each queue's completion_fd) instead of
    /// polling the completion queues, and leaves its CPU to others meanwhile (in a VM: to the emulation
    /// of that device). Costs an interrupt and a wake-up per wait. A worker pinned to a CPU (`cpus`)
    /// directs its queues' interrupts there (needs root; else they stay where they are, and the log
    /// says why). Devices without interrupts are polled. false: workers poll the devices while they
    /// hold commands.
    bool device_interrupts = kDefaultDeviceInterrupts;
    unsigned queue_entries = 128;           ///< MQES + 1: commands a queue may have outstanding
    std::uint32_t max_transfer = 128 << 10; ///< MDTS: bytes per command
    std::uint32_t in_capsule = 8192;        ///< write data carried in a command capsule (beyond: R2T)
    unsigned max_io_queues = 64;            ///< granted to a controller by Set Features (Number of Queues)
    bool discovery = true;                  ///< answer the discovery NQN on every listener
};

/// One line of a discovery log page.
struct DiscoveryEntry {
    std::string subnqn;
    Address address;
    std::uint16_t port_id = 1;
};

struct ControllerStats {
    std::uint16_t cntlid = 0;
    std::string subnqn, hostnqn, peer;
    unsigned io_queues = 0;
    std::uint64_t commands = 0, errors = 0;
};

/// A listening TCP socket on `a` (non-blocking, SO_REUSEADDR); EADDRINUSE says who to ask.
Result<Fd> listen_socket(const Address& a);
/// The next connection waiting on `listen_fd` (non-blocking, TCP_NODELAY) and its peer's address;
/// nullopt when none is waiting.
std::optional<std::pair<Fd, std::string>> accept_connection(int listen_fd);

/// The first steps of a connection, taken by a front end that listens for several processes (udrvd):
/// the ICReq answered, then the first capsule read whole, and the subsystem it connects to named, so that
/// the connection can go to the process that serves that subsystem (Target::adopt). Everything is
/// checked as a target checks it; what is wrong ends the connection with a C2HTermReq.
class Handshake {
public:
    enum class Step { more, routed, failed };
    /// Takes received bytes. `reply()` then holds what to send back (the ICResp, or a C2HTermReq).
    Step feed(std::span<const std::byte> in);
    std::vector<std::byte> take_reply() { return std::exchange(reply_, {}); }
    const std::string& subnqn() const { return subnqn_; }
    const std::string& hostnqn() const { return hostnqn_; }
    const std::string& error() const { return error_; }
    bool hdgst() const { return hdgst_; }
    bool ddgst() const { return ddgst_; }
    std::uint32_t max_h2c_data() const { return max_h2c_data_; }
    /// Everything read after the ICReq (hand it to Target::adopt).
    std::vector<std::byte> take_pending() { return std::exchange(buf_, {}); }
    explicit Handshake(TargetOptions o = {}) : opt_(o), max_h2c_data_(o.max_transfer) {}

private:
    Step failed(std::uint16_t fes, std::uint32_t fei, std::string why, std::span<const std::byte> header);
    TargetOptions opt_;
    std::vector<std::byte> buf_, reply_;
    bool ic_done_ = false, hdgst_ = false, ddgst_ = false;
    std::uint32_t max_h2c_data_;
    std::string subnqn_, hostnqn_, error_;
};

class Target {
public:
    static Result<std::unique_ptr<Target>> create(TargetOptions o = {});
    /// Closes every connection (initiators see the transport go and reconnect elsewhere or fail their
    /// I/O), drains the workers, and releases the namespaces' block devices.
    ~Target();
    Target(const Target&) = delete;
    Target& operator=(const Target&) = delete;

    /// Adds a subsystem, or updates one with the same NQN in place: namespaces added or removed (connected
    /// hosts get a Namespace Attribute Changed event), the host list replaced. EINVAL says what is wrong.
    Result<void> set_subsystem(SubsystemSpec spec);
    /// Removes a subsystem: its controllers' connections close.
    Result<void> remove_subsystem(const std::string& nqn);
    /// Starts accepting connections on `a` (EADDRINUSE with who to ask when the port is taken).
    Result<void> listen(const Address& a);
    Result<void> stop_listening(const Address& a);
    std::vector<Address> listeners() const;
    /// What a discovery controller lists to `hostnqn`: by default this target's subsystems on its
    /// listeners; udrvd, which knows every host's subsystems, supplies the whole list.
    void set_discovery_source(std::function<std::vector<DiscoveryEntry>(const std::string& hostnqn)> source);

    std::vector<ControllerStats> controllers() const;

    /// Takes over a connection whose ICReq someone else answered (udrvd's listeners, see Handshake):
    /// the digests and MAXH2CDATA agreed, and `pending`, what was read after the ICReq (the Connect
    /// capsule), which is processed first.
    void adopt(Fd socket, std::string peer, bool hdgst, bool ddgst, std::uint32_t max_h2c_data, std::vector<std::byte> pending);

private:
    struct Impl;
    explicit Target(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace udrv::nvmf
