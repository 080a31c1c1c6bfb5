// An NVMe controller in memory (NVMe 1.4 over PCIe, the part udrv's driver uses): controller registers,
// admin and I/O queues in the driver's DMA memory, one namespace of RAM, MSI-X. It does the work a
// doorbell asks for when the doorbell is written. Told to, it fails commands with a status, holds their
// completions back (a command that times out), posts a completion naming a command nobody submitted, or
// sets the controller fatal status. Thread-safe: register writes from any thread are serialised.
#pragma once

#include <deque>
#include <mutex>
#include <optional>

#include "model.hpp"
#include "udrv/nvme_spec.hpp"

namespace udrv::models {

struct NvmeOptions {
    std::uint16_t max_queue_entries = 1024;  ///< CAP.MQES + 1
    std::uint16_t io_queues = 8;             ///< granted by Set Features (Number of Queues)
    std::uint8_t mdts = 5;                   ///< 2^mdts pages per command (128 KiB)
    std::uint8_t lba_shift = 9;              ///< 512-byte blocks
    std::uint64_t blocks = 8192;             ///< namespace size (4 MiB of 512 B)
    bool shadow_doorbells = false;           ///< offer Doorbell Buffer Config (OACS bit 8)
    unsigned msix_vectors = 17;
    bool honour_abort = true;                ///< false: Abort answers "not aborted" (the command stays held)
    bool never_ready = false;                ///< CC.EN=1 never sets CSTS.RDY (a controller that hangs)
    bool nvm_command_set = true;             ///< CAP.CSS bit 0
    /// Admin commands with this opcode fail with `fail_admin_status` (probe's and queue creation's errors).
    std::optional<std::uint8_t> fail_admin_opcode;
    std::uint16_t fail_admin_status = 0x0002;  ///< Invalid Field in Command
};

class NvmeModel final : public ModelFunction {
public:
    using Options = NvmeOptions;
    explicit NvmeModel(std::string address = "0000:00:04.0", Options o = {});

    // ---- what went on, for tests ----
    std::uint64_t commands() const noexcept { return commands_; }
    std::uint64_t doorbell_writes() const noexcept { return doorbells_; }
    /// Completions that could not be posted because the driver had not freed the CQ entry (a driver bug).
    std::uint64_t cq_overflows() const noexcept { return cq_overflows_; }
    std::uint64_t resets() const noexcept { return resets_; }
    bool shut_down() const noexcept { return shut_down_; }
    std::span<std::byte> media() noexcept { return media_; }
    /// Commands taken from SQ `qid` so far, and the largest transfer one of them moved.
    std::uint64_t commands_on(std::uint16_t qid) const;
    std::size_t largest_transfer() const noexcept { return largest_transfer_; }
    unsigned prp_lists() const noexcept { return prp_lists_; }

    // ---- faults to inject ----
    /// The next `count` commands with this opcode on an I/O queue complete with status field `sf`.
    void fail_next(std::uint8_t opcode, std::uint16_t sf, unsigned count = 1);
    /// While held, I/O commands are taken but not completed (they time out); release() completes them.
    void hold_completions(bool hold);
    void release();
    /// The same for admin commands: while held they are taken but not completed.
    void hold_admin(bool hold);
    /// The next I/O completion names command id `cid` instead of the real one.
    void corrupt_next_cid(std::uint16_t cid);
    /// Sets CSTS.CFS (controller fatal status), as a controller that died does.
    void set_fatal();

private:
    struct Queue {
        std::uint64_t base = 0;
        std::uint16_t size = 0, head = 0, tail = 0;
        std::uint16_t cqid = 0;     // SQs: where completions go
        bool phase = true;          // CQs: the phase tag to post with
        bool irq = false;           // CQs: interrupts enabled
        std::uint16_t vector = 0;
        bool exists = false;
    };
    struct Held {
        std::uint16_t sqid, cid, sf;
        std::uint32_t result;
    };
    void on_mmio_written(unsigned bar, std::size_t offset, unsigned width, std::uint64_t value) override;
    void controller_config(std::uint32_t cc);
    void doorbell(std::size_t offset, std::uint32_t value);
    void run_sq(std::uint16_t qid);
    std::uint16_t execute(std::uint16_t sqid, const nvme::Sqe& c, std::uint32_t& result);
    std::uint16_t admin(const nvme::Sqe& c, std::uint32_t& result);
    std::uint16_t io(const nvme::Sqe& c);
    /// The data buffer of a command (PRP1/PRP2 or a PRP list), copied to or from `buf`.
    std::uint16_t transfer(const nvme::Sqe& c, std::byte* buf, std::size_t len, bool to_host);
    /// Posts a completion, or (the CQ full) keeps it until the driver frees an entry.
    bool complete(std::uint16_t sqid, std::uint16_t cid, std::uint16_t sf, std::uint32_t result);
    bool post(std::uint16_t sqid, std::uint16_t cid, std::uint16_t sf, std::uint32_t result);
    void flush_pending(std::uint16_t cqid);
    void identify_controller(std::byte* page) const;
    void identify_namespace(std::byte* page) const;

    // The driver reaches the model from its owner threads and its service thread (the admin queue,
    // CSTS); tests inject faults from theirs. One lock, as a device has one state.
    mutable std::recursive_mutex mu_;
    Options o_;
    std::vector<Queue> sqs_, cqs_;
    std::vector<std::uint64_t> per_queue_;
    std::vector<std::byte> media_;
    std::deque<Held> held_, pending_;  // held back by hold_completions; waiting for CQ room
    bool hold_ = false, hold_admin_ = false, shut_down_ = false;
    std::deque<Held> held_admin_;
    std::optional<std::uint16_t> corrupt_cid_;
    struct Injected {
        std::uint8_t opcode;
        std::uint16_t sf;
        unsigned count;
    };
    std::vector<Injected> failures_;
    std::uint64_t shadow_db_ = 0, shadow_ei_ = 0;  // Doorbell Buffer Config
    std::uint64_t commands_ = 0, doorbells_ = 0, cq_overflows_ = 0, resets_ = 0;
    std::size_t largest_transfer_ = 0;
    unsigned prp_lists_ = 0;
};

}  // namespace udrv::models
