// The kernel's side of the multi-queue test: sends UDP datagrams on FLOWS flows (source port 40000+i,
// destination port 9000+i), PER_FLOW each, so a multi-queue NIC's hash spreads them over its queues.
// Usage: udrv-vmtest-udpsend IPV4 FLOWS PER_FLOW   (prints "sent N")
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    if (argc != 4) return std::fprintf(stderr, "usage: %s IPV4 FLOWS PER_FLOW\n", argv[0]), 2;
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) return std::fprintf(stderr, "bad address %s\n", argv[1]), 2;
    const int flows = std::atoi(argv[2]), per_flow = std::atoi(argv[3]);
    int sent = 0;
    for (int f = 0; f < flows; ++f) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_port = htons(static_cast<unsigned short>(40000 + f));
        if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) return std::perror("socket/bind"), 1;
        dst.sin_port = htons(static_cast<unsigned short>(9000 + f));
        for (int i = 0; i < per_flow; ++i) {
            char msg[32];
            int len = std::snprintf(msg, sizeof msg, "UDRV flow %d seq %d end", f, i);
            if (sendto(fd, msg, static_cast<std::size_t>(len), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) == len) ++sent;
            usleep(2000);  // paced: the guest kernel's transmit path under TCG
        }
        close(fd);
    }
    std::printf("sent %d\n", sent);
    return sent == flows * per_flow ? 0 : 1;
}
