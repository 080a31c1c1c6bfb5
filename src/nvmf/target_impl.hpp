// The NVMe/TCP target's insides: subsystems (immutable snapshots, swapped whole when changed),
// controllers (what the admin queue negotiated), workers (threads owning connections and block queues),
// and connections (one queue each: PDUs in, commands to the device, PDUs out).
#pragma once

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "pdu.hpp"
#include "udrv/fileio.hpp"
#include "udrv/nvmf.hpp"

namespace udrv::nvmf::detail {

using clock = std::chrono::steady_clock;

// Status fields (SCT << 8 | SC, DNR in bit 14) the target answers with.
inline constexpr std::uint16_t kDnr = 0x4000;
inline constexpr std::uint16_t kScSuccess = 0x000, kScInvalidOpcode = 0x001, kScInvalidField = 0x002, kScDataTransferError = 0x004,
                               kScInternal = 0x006, kScSequenceError = 0x00c, kScInvalidNamespace = 0x00b, kScSglLengthInvalid = 0x00f,
                               kScTransientTransport = 0x022, kScLbaOutOfRange = 0x080, kScAerLimit = 0x105, kScInvalidLogPage = 0x109,
                               kScConnectIncompatibleFormat = 0x180, kScConnectInvalidParam = 0x182, kScConnectInvalidHost = 0x184,
                               kScWriteFault = 0x280, kScUnrecoveredRead = 0x281;

struct Namespace {
    std::uint32_t nsid = 0;
    std::string device;
    std::shared_ptr<block::Device> backing;
    block::Info info;
    std::array<std::byte, 16> nguid{};
};

/// A subsystem as it is at one moment; replaced, never changed, so a connection may hold one.
struct SubsystemState {
    std::string nqn, serial, model;
    bool allow_any_host = true, discovery = false;
    std::vector<std::string> hosts;
    std::vector<Namespace> namespaces;  ///< by nsid, ascending
    const Namespace* find(std::uint32_t nsid) const;
    bool host_allowed(const std::string& hostnqn) const;
};

struct Subsystem {
    std::string nqn;
    std::atomic<std::uint64_t> generation{1};
    std::atomic<bool> removed{false};
    std::shared_ptr<const SubsystemState> snapshot() const {
        std::lock_guard lock(mu);
        return state;
    }
    void replace(std::shared_ptr<const SubsystemState> s) {
        {
            std::lock_guard lock(mu);
            state = std::move(s);
        }
        generation.fetch_add(1, std::memory_order_release);
    }

private:
    mutable std::mutex mu;
    std::shared_ptr<const SubsystemState> state;
};

/// Counters of one queue, written by its connection's thread only.
struct alignas(64) QueueCounters {
    std::atomic<std::uint64_t> commands{0}, errors{0};
};

/// A controller: created by the admin queue's Connect, joined by I/O queues' Connects (any worker).
struct Controller {
    std::uint16_t cntlid = 0;
    std::shared_ptr<Subsystem> subsys;
    std::string hostnqn, peer;
    std::uint32_t kato_ms = 0;
    std::atomic<std::int64_t> last_traffic{0};   ///< clock ticks of the last command (traffic-based keep alive)
    std::atomic<bool> dead{false};               ///< admin queue gone or keep-alive expired: its I/O queues close
    std::atomic<std::uint32_t> cc{0}, csts{0};
    std::atomic<std::uint16_t> io_queues_granted{0};
    std::atomic<bool> ns_changed{false};         ///< a Namespace Attribute Changed event is due
    std::array<QueueCounters, 65> counters;      ///< admin queue, and I/O queues 1-64

    std::mutex mu;  // the fields below
    std::set<std::uint16_t> io_qids;
    std::vector<std::uint32_t> changed_nsids;
    // The admin queue's thread only.
    std::vector<std::uint16_t> aer_cids;
    std::uint32_t aen_config = 0;
    std::uint64_t known_generation = 0;
    std::vector<std::uint32_t> known_nsids;
    void touch() { last_traffic.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed); }
};

struct Completion {
    std::uint32_t dw0 = 0, dw1 = 0;
    std::uint16_t sf = kScSuccess;
};

struct TargetImplView;  // what workers and connections need of the target
class Worker;

/// One command of a connection, from its capsule to its last PDU out.
struct Command {
    enum class State : std::uint8_t { free, receiving, awaiting_slot, awaiting_h2c, executing, sending };
    State state = State::free;
    std::uint16_t tag = 0, cid = 0;
    nvme::Sqe sqe{};
    std::uint32_t len = 0, received = 0;  ///< data length (either direction); host data received so far
    std::span<std::byte> data;            ///< where the data is (a device buffer, or `own`)
    std::vector<std::byte> own;           ///< data that is not I/O (Connect, DSM ranges, Identify, logs)
    int slot = -1;                        ///< device buffer slot in the namespace queue
    struct NsQueue* nq = nullptr;
    std::uint16_t status = kScSuccess;    ///< an error found while its data still arrives
    unsigned dsm_next = 0;                ///< DSM: the next range to deallocate
    bool at_device = false;               ///< the device holds it (its buffer stays until it answers)
    bool then_r2t = false;                ///< awaiting_slot: ask for its data once it has a buffer (else: execute it)
    class Connection* conn = nullptr;
};

/// A namespace's block queue on one worker, with the device buffers commands borrow.
struct NsQueue {
    const block::Device* dev = nullptr;
    std::shared_ptr<block::Device> keep;
    std::unique_ptr<block::Queue> q;
    int irq_fd = -1;  ///< q's completion_fd, in the worker's epoll (device_interrupts); -1: polled
    block::Buffer buffers;
    std::uint32_t slot_bytes = 0;
    std::vector<std::uint16_t> free_slots;
    std::deque<class Connection*> waiting;  ///< connections with a command waiting for a free slot
    std::string error;                       ///< set-up failed: why (commands fail)
    std::span<std::byte> slot(int i) { return buffers.bytes().subspan(std::size_t(i) * slot_bytes, slot_bytes); }
};

class Connection {
public:
    /// `agreed`: the ICReq was answered elsewhere (Target::adopt) with these digests; `pending` is what
    /// came after it.
    Connection(Worker& w, Fd fd, std::string peer, const Limits* agreed = nullptr, std::span<const std::byte> pending = {});
    /// Acts on what was handed over with it, then reads on.
    void start();
    ~Connection();
    int fd() const { return fd_.get(); }
    const std::string& peer() const { return peer_; }
    /// Reads what the socket has and acts on it; false once the connection is closed.
    void on_readable();
    void on_writable();
    /// Sends what is queued (once per worker loop: responses batch).
    void flush();
    bool closed() const { return closed_; }
    /// Commands at the device (the connection is reaped when closed and none remain).
    unsigned at_device() const { return at_device_; }
    void close(const std::string& why);
    /// A free slot appeared in the queue this connection waits on.
    void resume();
    void tick(clock::time_point now);

private:
    enum class Rx : std::uint8_t { header, pad, data, ddgst };
    bool process();  // false: stop reading (closed)
    void fatal(const FatalError& e, std::span<const std::byte> header);
    void on_icreq();
    void on_capsule();
    void on_h2c_data();
    void data_done();
    void start_data(Command& c, std::span<std::byte> dst, std::uint32_t pad);
    void execute(Command& c);
    void execute_fabrics(Command& c);
    void execute_admin(Command& c);
    void execute_io(Command& c);
    void connect(Command& c);
    bool take_free_slot(Command& c, const Namespace& ns);
    bool slot_for(Command& c, const Namespace& ns);
    std::span<std::byte> slot_bytes(const Command& c) const { return c.nq->slot(c.slot).first(c.len); }
    void release(Command& c);
    void complete(Command& c, Completion r);
    void send_data_and_complete(Command& c, Completion r);
    void submit_io(Command& c);
    void dsm_step(Command& c);
    static void io_done(void* ctx, const Result<void>& r);
    Command* alloc_command();
    const Namespace* ns(std::uint32_t nsid);
    void deliver_aens();

    struct TxItem {
        std::array<std::byte, kMaxTxHeader + kDigestBytes> hdr;
        std::uint16_t hlen = 0;
        std::span<const std::byte> data;
        std::array<std::byte, kDigestBytes> ddgst{};
        bool has_ddgst = false;
        Command* release = nullptr;  ///< freed once sent
        std::size_t size() const { return hlen + data.size() + (has_ddgst ? kDigestBytes : 0); }
    };
    TxItem& push_tx();

    Worker& w_;
    Fd fd_;
    std::string peer_;
    bool closed_ = false, ic_done_ = false, connected_ = false, writable_armed_ = false;
    Limits limits_;
    std::uint16_t qid_ = 0, sq_entries_ = 0, sqhd_ = 0;
    bool sqflow_ = true;
    std::shared_ptr<Controller> ctrl_;
    std::shared_ptr<const SubsystemState> snap_;
    std::uint64_t snap_gen_ = 0;
    QueueCounters* counters_ = nullptr;
    // receive
    std::vector<std::byte> rx_;
    std::size_t rx_begin_ = 0, rx_end_ = 0;
    Rx state_ = Rx::header;
    Header h_{};
    std::array<std::byte, kIcBytes + kDigestBytes> hdr_{};
    std::span<std::byte> dst_;
    std::uint32_t dst_done_ = 0, pad_left_ = 0;
    std::uint32_t crc_ = kCrcInit;
    Command* rx_cmd_ = nullptr;   // the command whose data is arriving
    bool rx_h2c_ = false;
    // Commands waiting for a device buffer, in order; the first is registered with the queue it waits on.
    // The connection reads on meanwhile: the data of the writes that hold buffers is what frees them.
    std::deque<Command*> slot_wait_;
    NsQueue* waiting_on_ = nullptr;
    // commands
    std::vector<Command> cmds_;
    std::vector<std::uint16_t> free_cmds_;
    unsigned at_device_ = 0;
    // send
    std::deque<TxItem> txq_;
    std::size_t tx_off_ = 0;
};

class Worker {
public:
    /// `cpu` >= 0: the worker's thread runs on that CPU only.
    Worker(TargetImplView& t, unsigned index, int cpu = -1);
    int cpu() const { return cpu_; }
    ~Worker();
    void start();
    void stop();
    /// Hands an accepted connection to this worker (any thread); with `agreed`, one whose ICReq was
    /// answered already, and the bytes that followed it.
    void adopt(Fd fd, std::string peer, std::optional<Limits> agreed = std::nullopt, std::vector<std::byte> pending = {});
    TargetImplView& target() { return t_; }
    /// The namespace's queue on this worker, opened on first use.
    NsQueue& queue_for(const Namespace& ns);
    NsQueue* queue_of_irq(int fd);  ///< the queue whose completion_fd this is, or null
    void release_slot(NsQueue& nq, int slot);
    void wait_for_slot(NsQueue& nq, Connection* c) { nq.waiting.push_back(c); }
    void mark_dirty(Connection* c);
    void watch_writable(Connection* c, bool on);
    /// Listening sockets live in worker 0's epoll; their connections go round the workers.
    void watch_listener(int fd, bool on);
    void forget(Connection* c);

private:
    void run();
    TargetImplView& t_;
    unsigned index_;
    int cpu_;
    Fd epoll_, wake_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex inbox_mu_;
    struct Incoming {
        Fd fd;
        std::string peer;
        std::optional<Limits> agreed;
        std::vector<std::byte> pending;
    };
    std::vector<Incoming> inbox_;
    std::vector<std::unique_ptr<Connection>> conns_;
    std::unordered_map<int, Connection*> by_fd_;
    std::vector<std::unique_ptr<NsQueue>> queues_;
    std::vector<Connection*> dirty_;      ///< connections with PDUs to send
    std::vector<Connection*> resumable_;  ///< connections with commands waiting that a freed slot lets go on
    void flush_dirty();
};

/// What the workers and connections ask of the target (implemented by Target::Impl).
struct TargetImplView {
    TargetOptions opt;
    virtual ~TargetImplView() = default;
    virtual std::shared_ptr<Subsystem> find_subsystem(const std::string& nqn) = 0;
    virtual Result<std::shared_ptr<Controller>> new_controller(std::shared_ptr<Subsystem> s, const std::string& hostnqn, const std::string& peer,
                                                              std::uint32_t kato_ms) = 0;
    virtual std::shared_ptr<Controller> find_controller(std::uint16_t cntlid) = 0;
    virtual void drop_controller(std::uint16_t cntlid) = 0;
    virtual std::vector<DiscoveryEntry> discovery_entries(const std::string& hostnqn) = 0;
    virtual void accept_on(int listen_fd) = 0;
};

// Admin command bodies (admin.cpp): each fills `out` with the data to send and returns the completion.
Completion admin_identify(Controller& c, const SubsystemState& s, const TargetOptions& o, const nvme::Sqe& sqe, std::vector<std::byte>& out);
Completion admin_get_log_page(Controller& c, const SubsystemState& s, TargetImplView& t, const nvme::Sqe& sqe, std::vector<std::byte>& out);
Completion admin_features(Controller& c, const SubsystemState& s, const TargetOptions& o, const nvme::Sqe& sqe);
Completion property_get(Controller& c, const TargetOptions& o, const nvme::Sqe& sqe);
Completion property_set(Controller& c, const nvme::Sqe& sqe);
/// The Identify Controller data (exposed for tests).
std::vector<std::byte> identify_controller(const Controller& c, const SubsystemState& s, const TargetOptions& o);

}  // namespace udrv::nvmf::detail
