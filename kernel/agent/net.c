/* Guest NICs: loopback at boot, and NETIF, which configures the NIC with the
 * given MAC: name, MTU, up, then addresses and routes over rtnetlink. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "proto.h"
#include "records.h"
#include "util.h"

/* From <linux/netlink.h> and <linux/rtnetlink.h>, which musl does not ship. */
struct nlmsghdr { uint32_t len; uint16_t type, flags; uint32_t seq, pid; };
struct ifaddrmsg { uint8_t family, prefixlen, flags, scope; uint32_t index; };
struct rtmsg { uint8_t family, dst_len, src_len, tos, table, protocol, scope, type; uint32_t flags; };
struct rtattr { uint16_t len, type; };
enum { NLMSG_ERROR = 2, RTM_NEWADDR = 20, RTM_NEWROUTE = 24 };
enum { NLM_F_REQUEST = 1, NLM_F_ACK = 4, NLM_F_REPLACE = 0x100, NLM_F_CREATE = 0x400 };
enum { IFA_ADDRESS = 1, IFA_LOCAL = 2, IFA_F_NODAD = 2, RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5 };
enum { RT_TABLE_MAIN = 254, RTPROT_BOOT = 3, RT_SCOPE_LINK = 253, RTN_UNICAST = 1 };
#define NLA(n) (((n) + 3) & ~3u)

struct nlreq {
    struct nlmsghdr h;
    union { struct ifaddrmsg a; struct rtmsg r; };
    uint8_t attrs[128];
};

static void nl_attr(struct nlreq *q, int type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((uint8_t *)q + NLA(q->h.len));
    a->type = type;
    a->len = sizeof *a + len;
    memcpy(a + 1, data, len);
    q->h.len = NLA(q->h.len) + NLA(a->len);
}

/* Sends one request and returns the kernel's answer as -1/errno. */
static int nl_talk(struct nlreq *q)
{
    struct { struct nlmsghdr h; int error; uint8_t rest[64]; } ans;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0 /* NETLINK_ROUTE */);
    if (fd < 0)
        return -1;
    q->h.flags |= NLM_F_REQUEST | NLM_F_ACK;
    q->h.seq = 1;
    ssize_t n = send(fd, q, q->h.len, 0);
    if (n == (ssize_t)q->h.len)
        n = recv(fd, &ans, sizeof ans, 0);
    int saved = errno;
    close(fd);
    if (n < (ssize_t)(sizeof ans.h + sizeof ans.error))
        return errno = n < 0 ? saved : EPROTO, -1;
    if (ans.h.type != NLMSG_ERROR || !ans.error)
        return 0;
    return errno = -ans.error, -1;
}

static int if_ioctl(unsigned long req, struct ifreq *ifr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : ioctl(fd, req, ifr);
    int saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    return rc;
}

static int set_up(const char *name, int up)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (if_ioctl(SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags = up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP;
    return if_ioctl(SIOCSIFFLAGS, &ifr);
}

void net_lo_up(void)
{
    if (set_up("lo", 1) < 0)
        logmsg("bring up lo: %s", strerror(errno));
}

/* The family's address length: 4 and 6 as well as AF_INET and AF_INET6. */
static int alen(uint32_t family)
{
    return family == 4 || family == AF_INET ? 4 : family == 6 || family == AF_INET6 ? 16 : 0;
}

static int add_addr(int index, const uint8_t *v, uint32_t rl, struct error *e)
{
    struct nlreq q = {.h = {.len = sizeof q.h + sizeof q.a, .type = RTM_NEWADDR, .flags = NLM_F_CREATE | NLM_F_REPLACE}};
    int n = rl >= 8 ? alen(get_u32(v)) : 0;
    if (!n || rl < 8u + n)
        return err_setx(e, EINVAL, "bad NET_ADDR record");
    q.a = (struct ifaddrmsg){.family = n == 4 ? AF_INET : AF_INET6, .prefixlen = get_u32(v + 4),
                             .flags = n == 16 ? IFA_F_NODAD : 0, .index = index};
    nl_attr(&q, IFA_LOCAL, v + 8, n);
    nl_attr(&q, IFA_ADDRESS, v + 8, n);
    char text[INET6_ADDRSTRLEN] = "?";
    inet_ntop(q.a.family, v + 8, text, sizeof text);
    return nl_talk(&q) < 0 ? err_set(e, errno, "add address %s/%u", text, q.a.prefixlen) : 0;
}

/* destination, then the gateway (absent, or all zeros: the destination is on the link) */
static int add_route(int index, const uint8_t *v, uint32_t rl, struct error *e)
{
    static const uint8_t zero[16];
    struct nlreq q = {.h = {.len = sizeof q.h + sizeof q.r, .type = RTM_NEWROUTE, .flags = NLM_F_CREATE | NLM_F_REPLACE}};
    int n = rl >= 8 ? alen(get_u32(v)) : 0;
    if (!n || rl < 8u + n)
        return err_setx(e, EINVAL, "bad NET_ROUTE record");
    int gw = rl >= 8u + 2 * n && memcmp(v + 8 + n, zero, n);
    q.r = (struct rtmsg){.family = n == 4 ? AF_INET : AF_INET6, .dst_len = get_u32(v + 4), .table = RT_TABLE_MAIN,
                         .protocol = RTPROT_BOOT, .scope = gw ? 0 : RT_SCOPE_LINK, .type = RTN_UNICAST};
    if (q.r.dst_len)
        nl_attr(&q, RTA_DST, v + 8, n);
    if (gw)
        nl_attr(&q, RTA_GATEWAY, v + 8 + n, n);
    nl_attr(&q, RTA_OIF, &index, 4);
    char dst[INET6_ADDRSTRLEN] = "?", via[INET6_ADDRSTRLEN] = "";
    inet_ntop(q.r.family, v + 8, dst, sizeof dst);
    if (gw)
        inet_ntop(q.r.family, v + 8 + n, via, sizeof via);
    return nl_talk(&q) < 0 ? err_set(e, errno, "add route %s/%u%s%s", dst, q.r.dst_len, gw ? " via " : "", via) : 0;
}

/* The interface with this MAC address, into name. The interfaces are looked up
 * by index with ioctls, not dumped over netlink: NETIF runs once per VM, in a
 * guest restored from a template, where TCG translates every kernel path the
 * first time it runs, and the netlink dump's cost 20 ms there. NETIF comes
 * before the container runs, so the VM's interfaces are the kernel's own, with
 * small indexes. */
#define MAX_IFINDEX 64
static int find_mac(const uint8_t *mac, char *name, struct error *e)
{
    for (int index = 1; index <= MAX_IFINDEX; index++) {
        struct ifreq ifr = {.ifr_ifindex = index};
        if (if_ioctl(SIOCGIFNAME, &ifr) < 0)
            continue;
        if (if_ioctl(SIOCGIFHWADDR, &ifr) == 0 && !memcmp(ifr.ifr_hwaddr.sa_data, mac, 6)) {
            snprintf(name, IF_NAMESIZE, "%s", ifr.ifr_name);
            return 0;
        }
    }
    return err_setx(e, ENODEV, "no NIC with MAC %02x:%02x:%02x:%02x:%02x:%02x",
                    mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

/* What NETIF says about the NIC itself. */
struct nic {
    const uint8_t *mac; /* NULL: find it by name */
    const uint8_t *probe_mac; /* NULL: none (a VM restored from a template: its NIC has this one) */
    char want[IF_NAMESIZE]; /* the name to give it ("": keep its own) */
    uint32_t mtu;     /* 0: keep */
};

static void read_nic(const uint8_t *p, size_t len, struct nic *nic)
{
    struct rec_iter it = rec_iter(p, len);
    uint32_t tag, rl;
    const uint8_t *v;
    memset(nic, 0, sizeof *nic);
    while (rec_next(&it, &tag, &v, &rl) > 0) {
        if (tag == TAG_NET_MAC && rl >= 6)
            nic->mac = v;
        else if (tag == TAG_NET_PROBE_MAC && rl >= 6)
            nic->probe_mac = v;
        else if (tag == TAG_NET_MTU && rl >= 4)
            nic->mtu = get_u32(v);
        else if (tag == TAG_NET_NAME && rl && rl < IF_NAMESIZE)
            memcpy(nic->want, v, rl);
    }
}

/* Finds the NIC, names it and sets its MTU, brings it up; its name into name. */
static int set_link(const struct nic *nic, char *name, struct error *e)
{
    struct ifreq ifr = {0};
    if (nic->mac && nic->probe_mac && find_mac(nic->probe_mac, name, e) == 0) {
        /* restored from a template: the NIC has the template's MAC until given its own */
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
        ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        memcpy(ifr.ifr_hwaddr.sa_data, nic->mac, 6);
        if (set_up(name, 0) < 0 || if_ioctl(SIOCSIFHWADDR, &ifr) < 0)
            return err_set(e, errno, "set the MAC of %s", name);
        memset(&ifr, 0, sizeof ifr);
    } else if (nic->mac) {
        if (find_mac(nic->mac, name, e) < 0)
            return -1;
    } else if (*nic->want) {
        memcpy(name, nic->want, IF_NAMESIZE);
    } else {
        return err_setx(e, EINVAL, "NETIF names no NIC (neither MAC nor name)");
    }
    if (*nic->want && strcmp(name, nic->want)) {
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
        snprintf(ifr.ifr_newname, sizeof ifr.ifr_newname, "%s", nic->want);
        if (set_up(name, 0) < 0 || if_ioctl(SIOCSIFNAME, &ifr) < 0)
            return err_set(e, errno, "rename %s to %s", name, nic->want);
        memcpy(name, nic->want, IF_NAMESIZE);
    }
    /* Only a change: setting the same MTU still runs every notifier (costly under TCG). */
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (nic->mtu && (if_ioctl(SIOCGIFMTU, &ifr) < 0 || ifr.ifr_mtu != (int)nic->mtu)) {
        ifr.ifr_mtu = nic->mtu;
        if (if_ioctl(SIOCSIFMTU, &ifr) < 0)
            return err_set(e, errno, "set the MTU of %s to %u", name, nic->mtu);
    }
    if (set_up(name, 1) < 0)
        return err_set(e, errno, "bring up %s", name);
    return 0;
}

/* The records of one kind (NET_ADDR or NET_ROUTE), through add. */
static int add_each(int index, const uint8_t *p, size_t len, uint32_t kind,
                    int (*add)(int, const uint8_t *, uint32_t, struct error *), struct error *e)
{
    struct rec_iter it = rec_iter(p, len);
    uint32_t tag, rl;
    const uint8_t *v;
    while (rec_next(&it, &tag, &v, &rl) > 0)
        if (tag == kind && add(index, v, rl, e) < 0)
            return -1;
    return 0;
}

int net_configure(const uint8_t *p, size_t len, struct error *e)
{
    struct nic nic;
    char name[IF_NAMESIZE] = "";

    if (rec_check(p, len, e) < 0)
        return -1;
    read_nic(p, len, &nic);
    if (set_link(&nic, name, e) < 0)
        return -1;
    int index = if_nametoindex(name);
    if (add_each(index, p, len, TAG_NET_ADDR, add_addr, e) < 0)
        return -1;
    return add_each(index, p, len, TAG_NET_ROUTE, add_route, e); /* after the addresses they may go through */
}
