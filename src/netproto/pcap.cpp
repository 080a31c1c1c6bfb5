#include "udrv/pcap.hpp"

#include <pcap/pcap.h>

namespace udrv::pcap {

struct Writer::Handles {
    pcap_t* dead = nullptr;        // a "dead" capture handle: the link type and snap length of the file
    pcap_dumper_t* dumper = nullptr;
    ~Handles() {
        if (dumper) pcap_dump_close(dumper);
        if (dead) pcap_close(dead);
    }
};

Writer::Writer(std::unique_ptr<Handles> h, std::string path, std::uint32_t snaplen) : h_(std::move(h)), path_(std::move(path)), snaplen_(snaplen) {}
Writer::Writer(Writer&&) noexcept = default;
Writer& Writer::operator=(Writer&&) noexcept = default;
Writer::~Writer() = default;

Result<Writer> Writer::create(const std::string& path, std::uint32_t snaplen) {
    if (snaplen == 0) return fail(EINVAL, "{}: a snap length of 0 keeps nothing", path);
    auto h = std::make_unique<Handles>();
    h->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, static_cast<int>(snaplen), PCAP_TSTAMP_PRECISION_MICRO);
    if (!h->dead) return fail(ENOMEM, "{}: libpcap could not set up a capture handle", path);
    h->dumper = pcap_dump_open(h->dead, path.c_str());
    if (!h->dumper) return fail(EIO, "cannot create {}: {}", path, pcap_geterr(h->dead));
    return Writer(std::move(h), path, snaplen);
}

Result<void> Writer::write(std::span<const std::byte> frame, std::chrono::system_clock::time_point when) {
    if (!h_) return fail(EINVAL, "pcap writer was moved from");
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch()).count();
    pcap_pkthdr hdr{};
    hdr.ts.tv_sec = static_cast<time_t>(us / 1000000);
    hdr.ts.tv_usec = static_cast<suseconds_t>(us % 1000000);
    hdr.len = static_cast<bpf_u_int32>(frame.size());
    hdr.caplen = static_cast<bpf_u_int32>(std::min<std::size_t>(frame.size(), snaplen_));
    // SAFETY: pcap_dump takes its dumper as the u_char* "user" argument of libpcap's callback convention
    // (it casts it back), and reads hdr.caplen bytes of the frame, which holds at least that many.
    pcap_dump(reinterpret_cast<u_char*>(h_->dumper), &hdr, reinterpret_cast<const u_char*>(frame.data()));
    return {};
}

Result<void> Writer::flush() {
    if (!h_) return fail(EINVAL, "pcap writer was moved from");
    if (pcap_dump_flush(h_->dumper) != 0) return fail(EIO, "{}: writing the capture failed", path_);
    return {};
}

}  // namespace udrv::pcap
