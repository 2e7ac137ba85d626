/* runv host <-> guest agent wire protocol, version 1.  See docs/protocol.md.
 *
 * Every message is a frame: a 12-byte little-endian header
 *     u32 type | u32 stream | u32 len
 * followed by len payload bytes (len <= RUNV_MAX_PAYLOAD).  `stream` is the
 * process id the host chose (1 = the container's init, 0 = none).
 * runv/agent/protocol.py mirrors every number here; a unit test checks that.
 */
#ifndef RUNV_PROTO_H
#define RUNV_PROTO_H

#include <stdint.h>

#define RUNV_PROTO_VERSION 1
#define RUNV_HEADER_SIZE 12
#define RUNV_MAX_PAYLOAD 65536
#define RUNV_WINDOW 262144 /* unacknowledged stdio bytes per stream and direction */
#define RUNV_PORT_NAME "runv.agent"
#define RUNV_SHARE_ROOT_TAG "rootfs"

enum runv_msg {
    /* host -> guest */
    MSG_CREATE = 1,   /* payload: records; create the container, init waits for START */
    MSG_START = 2,    /* release the init process */
    MSG_EXEC = 3,     /* payload: records; spawn a process in the container now */
    MSG_SIGNAL = 4,   /* payload: u32 signo, u32 all (1 = every process in the container) */
    MSG_STDIN = 5,    /* payload: bytes; len 0 = close stdin */
    MSG_WINSIZE = 6,  /* payload: u16 rows, u16 cols */
    MSG_PS = 7,       /* reply OK payload: u32 pids of the container's processes */
    MSG_SHUTDOWN = 8, /* power the VM off */
    MSG_NETIF = 9,    /* payload: records; configure a guest NIC */
    MSG_HELLO = 10,   /* payload: u64 wall clock (ns since the epoch), then random seed bytes;
                         a new host after a restore: the agent sets the clock, reseeds, says READY */
    MSG_UPDATE = 11,  /* payload: CGROUP records; new limits for the container's guest cgroup */

    /* guest -> host */
    MSG_READY = 100,  /* payload: u32 version, then the agent's name (text) */
    MSG_OK = 101,     /* reply to a request; CREATE/EXEC: u32 guest pid */
    MSG_ERROR = 102,  /* reply to a request: i32 errno, then a message (text) */
    MSG_STDOUT = 103, /* payload: bytes; len 0 = end of stream */
    MSG_STDERR = 104, /* payload: bytes; len 0 = end of stream */
    MSG_EXIT = 105,   /* payload: i32 wait status (as waitpid() gives it) */

    /* both ways */
    MSG_ACK = 110,    /* payload: u32 which (0 stdin, 1 stdout, 2 stderr), u32 bytes consumed */
};

/* Records: the payload of CREATE, EXEC, NETIF and UPDATE is a sequence of
 *     u32 tag | u32 len | len bytes
 * Strings are not NUL-terminated unless said; integers are little-endian. */
enum runv_tag {
    TAG_ARG = 1,            /* string, repeated in order */
    TAG_ENV = 2,            /* "KEY=VALUE", repeated */
    TAG_CWD = 3,            /* string */
    TAG_UID = 4,            /* u32 */
    TAG_GID = 5,            /* u32 */
    TAG_ADDGID = 6,         /* u32, repeated */
    TAG_HOSTNAME = 7,       /* string */
    TAG_ROOT_READONLY = 8,  /* u32 */
    TAG_MOUNT = 9,          /* u32 flags, u32 propagation flags, then four NUL-terminated
                               strings: type, source, destination, data */
    TAG_TERMINAL = 10,      /* u32 */
    TAG_UMASK = 11,         /* u32 */
    TAG_RLIMIT = 12,        /* u32 resource, u64 soft, u64 hard */
    TAG_CAPS = 13,          /* 5 x u64: bounding, effective, inheritable, permitted, ambient */
    TAG_NO_NEW_PRIVS = 14,  /* u32 */
    TAG_OOM_SCORE_ADJ = 15, /* i32 */
    TAG_SECCOMP = 16,       /* struct sock_filter[] (8 bytes each), installed right before exec */
    TAG_MASKED_PATH = 17,   /* string */
    TAG_READONLY_PATH = 18, /* string */
    TAG_SYSCTL = 19,        /* NUL-terminated key, then value */
    TAG_DEVICE = 20,        /* u32 type ('c','b','p'), u32 major, u32 minor, u32 mode,
                               u32 uid, u32 gid, then the path */
    TAG_DOMAINNAME = 21,    /* string */
    TAG_ROOT_PROPAGATION = 22, /* u32 mount flags for "/" (MS_SHARED, MS_SLAVE, ...) */
    TAG_UID_MAP = 23,       /* u32 container id, u32 host id, u32 size; repeated */
    TAG_GID_MAP = 24,       /* same */
    TAG_SHARE = 25,         /* NUL-terminated 9p tag, then the guest directory to mount it on */
    TAG_NAMESPACES = 26,    /* u32 clone flags of the namespaces to create for the container */
    TAG_SECCOMP_FLAGS = 27, /* u32 seccomp(2) filter flags */
    TAG_CGROUP = 28,        /* NUL-terminated knob of the container's guest cgroup (v2), then its value */
    TAG_ROOT_DIR = 29,      /* CREATE of a pod's next container: the guest directory (on the pod
                               share) to bind as its root, instead of the "rootfs" share */
    TAG_JOIN_NAMESPACES = 30, /* u32 clone flags of the namespaces it joins: the pod's first container's */
    TAG_CONTAINER = 31,     /* EXEC: u32 init stream of the container to run in (default 1) */
    TAG_POD_CGROUP = 32,    /* as CGROUP, for the cgroup that holds a pod's next containers together */
    TAG_NET_ADDR = 40,      /* NETIF: u32 family, u32 prefix, address bytes */
    TAG_NET_ROUTE = 41,     /* NETIF: u32 family, u32 prefix, destination bytes, gateway bytes */
    TAG_NET_MAC = 42,       /* NETIF: 6 bytes */
    TAG_NET_MTU = 43,       /* NETIF: u32 */
    TAG_NET_NAME = 44,      /* NETIF: the interface name to give it in the guest */
    TAG_NET_PROBE_MAC = 45, /* NETIF: 6 bytes: the MAC it may have from its VM's template; found by
                               that when no NIC has NET_MAC, it is given NET_MAC */
};

struct runv_header {
    uint32_t type;
    uint32_t stream;
    uint32_t len;
};

#endif
