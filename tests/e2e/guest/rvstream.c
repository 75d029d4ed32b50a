/* rvstream: the guest side of rvhost's QEMU end-to-end tests (migration.py,
 * viommu.py). Built static by guest-image.sh into the "stream" initramfs.
 *
 *   rvstream stream [-p PPS] [-H HOLD_MS] [-n NDST] [-i IFACE]
 *       Sends ICMP echo requests through an AF_PACKET socket whose payloads
 *       are a deterministic function of a 32-bit sequence number (see
 *       payload() below; migration.py re-implements it). testpmd's icmpecho
 *       echoes them; the echo replies are written into the guest's virtio-net
 *       receive buffers by the vhost-user back-end. The replies are left
 *       queued in the socket (that is, in the very pages the back-end wrote)
 *       for HOLD_MS and only then read and compared byte for byte with the
 *       payload regenerated from their sequence number; a page the back-end
 *       wrote but did not log as dirty during a migration, or a page it read
 *       before postcopy delivered it, shows up as a bad packet. After every
 *       drain a line "STREAM ..." reports the counts and the sum of the
 *       CRC-32s of the good payloads, plus the sequence numbers never seen
 *       (migration.py recomputes the sum from its own generator).
 *       NDST > 1 rotates the destination IP over 10.0.0.1, .3, .4, ... so that
 *       several flows (hence several queues with mq) carry the stream.
 *   rvstream channels IFACE N
 *       Sets the combined channel count (ethtool -L IFACE combined N) and
 *       prints "CHANNELS: ..." (busybox has no ethtool).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x54535652u /* "RVST" little endian */
#define BLOCK 65536u
#define MINLEN 1180u
#define MAXLEN 1400u
#define HDR 12u
#define ICMP_ID 0x5256
#define MAXSEQ (1u << 22)

static uint8_t block[BLOCK];
static uint32_t crc_table[256];
static uint8_t seen[MAXSEQ / 8];

static void init_tables(void)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (unsigned i = 0; i < BLOCK / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(block + 8 * i, &x, 8); /* little endian */
	}
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static uint32_t plen(uint32_t seq)
{
	return MINLEN + ((uint32_t)(seq * 2654435761u) >> 8) % (MAXLEN - MINLEN + 1);
}

/* The payload of sequence number seq: magic, seq, length, then a slice of
 * the pseudo-random block that starts at an offset depending on seq. */
static uint32_t payload(uint32_t seq, uint8_t *out)
{
	uint32_t len = plen(seq), off = (uint32_t)(seq * 7919u) % (BLOCK - MAXLEN);
	uint32_t h[3] = {MAGIC, seq, len};
	memcpy(out, h, HDR);
	memcpy(out + HDR, block + off, len - HDR);
	return len;
}

static uint16_t csum(const void *data, size_t n)
{
	const uint8_t *p = data;
	uint32_t s = 0;
	for (; n > 1; n -= 2, p += 2)
		s += (uint32_t)p[0] << 8 | p[1];
	if (n)
		s += (uint32_t)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int channels(const char *ifname, unsigned n)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	ifr.ifr_data = (void *)&ch;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
		printf("CHANNELS: get failed: %s\n", strerror(errno));
		return 1;
	}
	unsigned before = ch.combined_count;
	if (n != before) {
		ch.cmd = ETHTOOL_SCHANNELS;
		ch.combined_count = n;
		if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
			printf("CHANNELS: set %u failed: %s (max %u, current %u)\n", n, strerror(errno),
			       ch.max_combined, before);
			return 1;
		}
		ch.cmd = ETHTOOL_GCHANNELS;
		ioctl(fd, SIOCETHTOOL, &ifr);
	}
	printf("CHANNELS: max=%u before=%u combined=%u\n", ch.max_combined, before, ch.combined_count);
	fflush(stdout);
	close(fd);
	return 0;
}

struct stats {
	uint64_t sent, good, bad, dup, bytes, dig;
	uint32_t maxseq; /* highest good seq + 1 */
};

static void report(int fd, struct stats *s, uint64_t t0)
{
	struct tpacket_stats ps;
	socklen_t l = sizeof(ps);
	static uint64_t drops;
	if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ps, &l) == 0)
		drops += ps.tp_drops; /* reading resets them */
	char miss[1024];
	size_t m = 0;
	unsigned nmiss = 0, ranges = 0;
	miss[0] = 0;
	for (uint32_t i = 0; i < s->maxseq; i++) {
		if (seen[i / 8] & (1 << (i % 8)))
			continue;
		uint32_t j = i;
		while (j + 1 < s->maxseq && !(seen[(j + 1) / 8] & (1 << ((j + 1) % 8))))
			j++;
		nmiss += j - i + 1;
		if (ranges++ < 48 && m < sizeof(miss) - 32)
			m += snprintf(miss + m, sizeof(miss) - m, i == j ? "%s%u" : "%s%u-%u", m ? "," : "", i, j);
		i = j;
	}
	printf("STREAM t=%llu sent=%llu good=%llu bad=%llu dup=%llu bytes=%llu dig=%llu maxseq=%u "
	       "nmiss=%u sockdrop=%llu miss=%s%s\n",
	       (unsigned long long)(now_ms() - t0), (unsigned long long)s->sent, (unsigned long long)s->good,
	       (unsigned long long)s->bad, (unsigned long long)s->dup,
	       (unsigned long long)s->bytes, (unsigned long long)s->dig, s->maxseq, nmiss,
	       (unsigned long long)drops, ranges ? miss : "-", ranges > 48 ? ",..." : "");
	fflush(stdout);
}

static void check(const uint8_t *f, ssize_t n, struct stats *s)
{
	static uint8_t want[MAXLEN];
	static unsigned printed;
	if (n < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00)
		return;
	const uint8_t *ip = f + 14;
	unsigned ihl = (ip[0] & 15) * 4, tot = ip[2] << 8 | ip[3];
	if (ip[9] != 1 || ihl < 20 || 14 + tot > (unsigned)n || tot < ihl + 8)
		return;
	const uint8_t *icmp = ip + ihl;
	if (icmp[0] != 0 || (icmp[4] << 8 | icmp[5]) != ICMP_ID)
		return; /* not one of our echo replies (busybox ping's, ARP, ...) */
	const uint8_t *p = icmp + 8;
	uint32_t len = tot - ihl - 8, h[3] = {0, 0, 0};
	if (len >= HDR)
		memcpy(h, p, HDR);
	const char *why = NULL;
	uint32_t seq = h[1], off = 0;
	if (len < HDR || h[0] != MAGIC)
		why = "header";
	else if (seq >= MAXSEQ || seq >= s->sent)
		why = "seq";
	else if (h[2] != len || plen(seq) != len)
		why = "length";
	else if (csum(icmp, len + 8) != 0)
		why = "icmp checksum";
	else {
		payload(seq, want);
		for (off = 0; off < len && p[off] == want[off]; off++)
			;
		if (off < len)
			why = "payload";
	}
	if (why) {
		s->bad++;
		if (printed++ < 10)
			printf("STREAM-BAD %s: seq=%u len=%u first difference at byte %u\n", why, seq, len, off);
		return;
	}
	if (seen[seq / 8] & (1 << (seq % 8))) {
		s->dup++;
		if (printed++ < 10)
			printf("STREAM-DUP seq=%u\n", seq);
		return;
	}
	seen[seq / 8] |= 1 << (seq % 8);
	s->good++;
	s->bytes += len;
	s->dig += crc32(p, len);
	if (seq + 1 > s->maxseq)
		s->maxseq = seq + 1;
}

static int stream(int argc, char **argv)
{
	unsigned pps = 200, hold = 1500, ndst = 1;
	const char *ifname = "eth0";
	int c;
	while ((c = getopt(argc, argv, "p:H:n:i:")) != -1) {
		if (c == 'p')
			pps = atoi(optarg);
		else if (c == 'H')
			hold = atoi(optarg);
		else if (c == 'n')
			ndst = atoi(optarg);
		else if (c == 'i')
			ifname = optarg;
		else
			return 2;
	}
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		perror("SIOCGIFINDEX");
		return 1;
	}
	int ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("SIOCGIFHWADDR");
		return 1;
	}
	uint8_t mac[6];
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex,
				  .sll_halen = 6};
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("bind");
		return 1;
	}
	int one = 1, rcvbuf = 64 << 20;
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		perror("SO_RCVBUFFORCE");
	static const uint8_t dmac[6] = {0x02, 0x52, 0x56, 0x00, 0x00, 0x01};
	memcpy(sll.sll_addr, dmac, 6);

	struct stats s;
	memset(&s, 0, sizeof(s));
	uint8_t frame[14 + 20 + 8 + MAXLEN], rx[2048];
	/* Token bucket: PPS a second, at most 50 ms worth at once (no catching
	 * up after a stall, which would overflow the receive ring). */
	uint64_t t0 = now_ms(), last = t0, next_drain = t0 + hold;
	double credit = 0;
	printf("STREAM-START pps=%u hold=%u ndst=%u\n", pps, hold, ndst);
	fflush(stdout);
	for (;;) {
		uint64_t t = now_ms();
		credit += (double)(t - last) * pps / 1000;
		last = t;
		if (credit > pps / 20.0 + 1)
			credit = pps / 20.0 + 1;
		for (; credit >= 1; credit--) {
			uint32_t seq = (uint32_t)s.sent;
			if (seq >= MAXSEQ)
				break;
			uint32_t len = payload(seq, frame + 42);
			memcpy(frame, dmac, 6);
			memcpy(frame + 6, mac, 6);
			frame[12] = 0x08;
			frame[13] = 0x00;
			uint8_t *ip = frame + 14, *icmp = frame + 34;
			unsigned tot = 20 + 8 + len, d = seq % ndst;
			uint8_t ip_h[20] = {0x45, 0, tot >> 8, tot & 0xff, seq >> 8 & 0xff, seq & 0xff, 0x40, 0, 64, 1, 0, 0,
					    10, 0, 0, 2, 10, 0, 0, d == 0 ? 1 : 2 + d};
			memcpy(ip, ip_h, 20);
			uint16_t ipc = csum(ip, 20);
			ip[10] = ipc >> 8;
			ip[11] = ipc & 0xff;
			uint8_t icmp_h[8] = {8, 0, 0, 0, ICMP_ID >> 8, ICMP_ID & 0xff, seq >> 8 & 0xff, seq & 0xff};
			memcpy(icmp, icmp_h, 8);
			uint16_t ic = csum(icmp, 8 + len);
			icmp[2] = ic >> 8;
			icmp[3] = ic & 0xff;
			if (sendto(fd, frame, 14 + tot, MSG_DONTWAIT, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
				credit = 0;
				if (errno == ENOBUFS || errno == EAGAIN)
					break; /* the ring is full: retry this seq later */
				perror("sendto");
				return 1;
			}
			s.sent++;
		}
		if (t >= next_drain) {
			ssize_t n;
			while ((n = recv(fd, rx, sizeof(rx), MSG_DONTWAIT)) > 0)
				check(rx, n, &s);
			report(fd, &s, t0);
			next_drain = t + hold;
		}
		usleep(2000);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	init_tables();
	if (argc >= 2 && !strcmp(argv[1], "stream"))
		return stream(argc - 1, argv + 1);
	if (argc == 4 && !strcmp(argv[1], "channels"))
		return channels(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: rvstream stream [-p PPS] [-H HOLD_MS] [-n NDST] [-i IFACE] | channels IFACE N\n");
	return 2;
}
