// The kernel's side of the pktgen test: receives udrv pktgen's UDP frames through the guest kernel's
// socket layer and checks their sequence numbers: every one of 0..N-1 exactly once.
// Usage: udrv-vmtest-udprecv PORT COUNT TIMEOUT_S   (prints "ready" once listening)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 4) return std::fprintf(stderr, "usage: %s PORT COUNT TIMEOUT_S\n", argv[0]), 2;
    const int port = std::atoi(argv[1]);
    const std::uint64_t count = std::strtoull(argv[2], nullptr, 10);
    const int timeout = std::atoi(argv[3]);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Room for every frame even when this process is not scheduled for a while (TCG guest): as root,
    // past net.core.rmem_max (which caps SO_RCVBUF at ~200 KiB, about 200 of these frames).
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::perror("bind"), 1;
    std::printf("ready\n");
    std::fflush(stdout);
    std::vector<int> seen(count, 0);
    std::uint64_t got = 0, foreign = 0, dup = 0;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    char buf[2048];
    while (got < count && std::chrono::steady_clock::now() < end) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 12) continue;
        std::uint64_t seq;
        std::memcpy(&seq, buf + 4, 8);
        if (std::memcmp(buf, "UDRV", 4) != 0 || seq >= count) {
            ++foreign;
            continue;
        }
        if (seen[seq]++) ++dup;
        else ++got;
    }
    std::uint64_t missing = count - got;
    std::printf("received %llu of %llu sequence numbers, %llu missing, %llu duplicates, %llu foreign\n", (unsigned long long)got,
                (unsigned long long)count, (unsigned long long)missing, (unsigned long long)dup, (unsigned long long)foreign);
    if (missing && missing <= 10)
        for (std::uint64_t i = 0; i < count; ++i)
            if (!seen[i]) std::printf("missing %llu\n", (unsigned long long)i);
    return missing || dup ? 1 : 0;
}
