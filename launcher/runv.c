/* runv's launcher: the installed `runv` binary.
 *
 * Engines call `runv state ID` many times per container, and Python's start-up
 * alone costs more than `runc state`. This program answers `[global flags]
 * state ID` itself when it can reproduce, byte for byte, what the Python path
 * (runv/fast.py: tinyjson.dumps(oci_state(data)) and a newline) would print.
 * In every other case, and whenever it is unsure, it execs the Python path
 * unchanged: RUNV_PYTHON -S RUNV_SCRIPT ARGS..., so every error, message and
 * exit status stays Python's.
 *
 * It never guesses: invalid UTF-8, lone surrogates, duplicate keys, integers
 * Python might refuse, NaN, nesting deeper than MAX_DEPTH, a file over
 * MAX_STATE bytes, a read error, a state that is not well formed, an odd
 * locale or PYTHONIOENCODING: Python answers. The mirrored rules are
 * runv/fast.py (_state_request, entry), runv/ocistate.py (STATE_FIELDS,
 * well_formed, live_status, oci_state), runv/host/proc.py (start_time, alive),
 * runv/tinyjson.py and CPython's _json (the scanner, encode_basestring_ascii).
 * tests/unit/test_state_launcher.py compares the two paths.
 */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RUNV_PYTHON
#error "build with -DRUNV_PYTHON='\"/path/to/python\"'"
#endif
#ifndef RUNV_SCRIPT
#error "build with -DRUNV_SCRIPT='\"/path/to/runv.py\"'"
#endif

#define OCI_VERSION "1.0.2" /* runv.OCI_VERSION */
#define DEFAULT_ROOT "/run/runv"
#define PID_LIMIT 4194304 /* 2**22, the kernel's PID_MAX_LIMIT (ocistate.well_formed) */

enum {
    MAX_STATE = 1 << 20, /* bytes of state.json; runv writes a few KiB */
    MAX_DEPTH = 64,      /* nested arrays and objects; runv writes 5 */
    MAX_INT_DIGITS = 600 /* Python refuses more than int_max_str_digits (>= 640) */
};

/* What a step returns: go on, or let Python answer. */
typedef enum { OK = 0, FALL_BACK = -1 } step;

/* ---- a growable byte buffer ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static step put(struct buf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return FALL_BACK;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2)
                return FALL_BACK;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p)
            return FALL_BACK;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return OK;
}

static step puts_(struct buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* ---- UTF-8 ---- */

/* The length of the valid UTF-8 sequence at s (strict: no overlong forms, no
 * surrogates, nothing above U+10FFFF), with its code point, or 0 if invalid. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_char(s + i, n - i, &cp)))
            return false;
    return true;
}

static bool ascii(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return false;
    return true;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Whether Python decodes argv and opens text files as UTF-8 here (its UTF-8
 * mode, a UTF-8 locale, or the C/POSIX locale that Python 3.7+ treats as
 * UTF-8 unless told otherwise). Only asked when a byte is not ASCII. */
static bool python_reads_utf8(void)
{
    const char *mode = getenv("PYTHONUTF8");
    if (mode && strcmp(mode, "1") == 0)
        return true;
    const char *name = setlocale(LC_CTYPE, "");
    if (!name)
        name = setlocale(LC_CTYPE, NULL);
    if (strcmp(nl_langinfo(CODESET), "UTF-8") == 0)
        return true;
    return name && (strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0) && !mode;
}

/* Whether Python's stdout writes ASCII as ASCII (the output is all ASCII). */
static bool stdout_is_ascii_compatible(void)
{
    const char *enc = getenv("PYTHONIOENCODING");
    if (!enc)
        return true;
    static const char *const known[] = {"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1"};
    size_t n = strcspn(enc, ":");
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strlen(known[i]) == n && strncasecmp(enc, known[i], n) == 0)
            return true;
    return false;
}

/* ---- strict JSON, as CPython's _json scanner reads it ---- */

enum kind { J_NULL, J_FALSE, J_TRUE, J_INT, J_FLOAT, J_STR, J_ARR, J_OBJ };

#define NONE SIZE_MAX

struct node {
    enum kind kind;
    const char *s; /* J_STR: the decoded UTF-8; J_INT: the digits, without the sign */
    size_t n;
    bool neg;        /* J_INT: a '-' before the digits */
    const char *key; /* the decoded key, for a member of an object */
    size_t keylen;
    size_t first, next; /* the first child, the next sibling (NONE: none) */
    size_t count;       /* children */
};

struct parser {
    const unsigned char *p, *end;
    struct node *nodes;
    size_t nn, cap;
    char *text; /* decoded strings, never longer than the input */
    size_t tlen, tcap;
};

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && is_ws(*ps->p))
        ps->p++;
}

static size_t new_node(struct parser *ps, enum kind kind)
{
    if (ps->nn == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof *ps->nodes)
            return NONE;
        struct node *nodes = realloc(ps->nodes, cap * sizeof *nodes);
        if (!nodes)
            return NONE;
        ps->nodes = nodes;
        ps->cap = cap;
    }
    ps->nodes[ps->nn] = (struct node){.kind = kind, .first = NONE, .next = NONE};
    return ps->nn++;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *v)
{
    if (end - p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        *v <<= 4;
        if (c >= '0' && c <= '9')
            *v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            *v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            *v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    return 0;
}

/* A string, ps->p just after its opening quote; decoded into ps->text. A lone
 * surrogate (Python keeps it; this program does not) falls back. */
static step parse_string(struct parser *ps, const char **out, size_t *outlen)
{
    size_t start = ps->tlen;
    for (;;) {
        if (ps->p >= ps->end)
            return FALL_BACK; /* unterminated */
        unsigned char c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20)
            return FALL_BACK; /* strict: no raw control characters */
        char tmp[4];
        size_t k;
        if (c != '\\') {
            tmp[0] = (char)c; /* the whole input is valid UTF-8: copy bytes */
            k = 1;
            ps->p++;
        } else {
            if (ps->end - ps->p < 2)
                return FALL_BACK;
            unsigned char e = ps->p[1];
            ps->p += 2;
            uint32_t cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (hex4(ps->p, ps->end, &cp) < 0)
                    return FALL_BACK;
                ps->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return FALL_BACK; /* a lone low surrogate */
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                        hex4(ps->p + 2, ps->end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                        return FALL_BACK; /* a lone high surrogate */
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
            default:
                return FALL_BACK;
            }
            k = utf8_put(cp, tmp);
        }
        if (k > ps->tcap - ps->tlen)
            return FALL_BACK;
        memcpy(ps->text + ps->tlen, tmp, k);
        ps->tlen += k;
    }
    *out = ps->text + start;
    *outlen = ps->tlen - start;
    return OK;
}

static bool is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? : anything else that starts
 * like a number leaves a character no container accepts after a value. */
static step parse_number(struct parser *ps, struct node *nd)
{
    const unsigned char *p = ps->p, *end = ps->end;
    nd->neg = p < end && *p == '-';
    if (nd->neg)
        p++;
    const unsigned char *digits = p;
    if (!is_digit(p, end))
        return FALL_BACK; /* also -Infinity */
    if (*p == '0')
        p++;
    else
        while (is_digit(p, end))
            p++;
    nd->kind = J_INT;
    nd->s = (const char *)digits;
    nd->n = (size_t)(p - digits);
    if (p < end && *p == '.' && is_digit(p + 1, end)) {
        nd->kind = J_FLOAT;
        p += 2;
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *q = p + 1;
        if (q < end && (*q == '-' || *q == '+'))
            q++;
        if (is_digit(q, end)) {
            nd->kind = J_FLOAT;
            while (is_digit(q, end))
                q++;
            p = q;
        }
    }
    if (nd->kind == J_INT && nd->n > MAX_INT_DIGITS)
        return FALL_BACK;
    ps->p = p;
    return OK;
}

static bool literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return false;
    ps->p += n;
    return true;
}

static int compare_keys(const void *a, const void *b)
{
    const struct node *x = *(const struct node *const *)a, *y = *(const struct node *const *)b;
    if (x->keylen != y->keylen)
        return x->keylen < y->keylen ? -1 : 1;
    return memcmp(x->key, y->key, x->keylen);
}

/* Python keeps the last of duplicate keys, in the first one's place: not mirrored. */
static step unique_keys(struct parser *ps, size_t obj)
{
    size_t n = ps->nodes[obj].count;
    if (n < 2)
        return OK;
    const struct node **members = malloc(n * sizeof *members);
    if (!members)
        return FALL_BACK;
    size_t i = 0;
    for (size_t c = ps->nodes[obj].first; c != NONE; c = ps->nodes[c].next)
        members[i++] = &ps->nodes[c];
    qsort(members, n, sizeof *members, compare_keys);
    step r = OK;
    for (i = 1; i < n && r == OK; i++)
        if (compare_keys(&members[i - 1], &members[i]) == 0)
            r = FALL_BACK;
    free(members);
    return r;
}

static step parse_value(struct parser *ps, int depth, size_t *out);

/* The members of an array or object, ps->p just after its bracket. */
static step parse_items(struct parser *ps, int depth, size_t parent, bool object)
{
    char close = object ? '}' : ']';
    size_t last = NONE;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t keylen = 0, child;
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"')
                return FALL_BACK;
            ps->p++;
            if (parse_string(ps, &key, &keylen) != OK)
                return FALL_BACK;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return FALL_BACK;
            ps->p++;
            skip_ws(ps);
        }
        if (parse_value(ps, depth + 1, &child) != OK)
            return FALL_BACK;
        ps->nodes[child].key = key;
        ps->nodes[child].keylen = keylen;
        if (last == NONE)
            ps->nodes[parent].first = child;
        else
            ps->nodes[last].next = child;
        last = child;
        ps->nodes[parent].count++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return object ? unique_keys(ps, parent) : OK;
        }
        if (ps->p >= ps->end || *ps->p != ',')
            return FALL_BACK;
        ps->p++;
        skip_ws(ps); /* a trailing comma: the next value fails to parse */
    }
}

static step parse_value(struct parser *ps, int depth, size_t *out)
{
    if (ps->p >= ps->end)
        return FALL_BACK;
    unsigned char c = *ps->p;
    size_t nd = new_node(ps, J_NULL);
    if (nd == NONE)
        return FALL_BACK;
    *out = nd;
    switch (c) {
    case '"':
        ps->p++;
        ps->nodes[nd].kind = J_STR;
        return parse_string(ps, &ps->nodes[nd].s, &ps->nodes[nd].n);
    case '{':
    case '[':
        if (depth >= MAX_DEPTH)
            return FALL_BACK;
        ps->p++;
        ps->nodes[nd].kind = c == '{' ? J_OBJ : J_ARR;
        return parse_items(ps, depth, nd, c == '{');
    case 'n':
        return literal(ps, "null") ? OK : FALL_BACK;
    case 't':
        ps->nodes[nd].kind = J_TRUE;
        return literal(ps, "true") ? OK : FALL_BACK;
    case 'f':
        ps->nodes[nd].kind = J_FALSE;
        return literal(ps, "false") ? OK : FALL_BACK;
    default: {
        struct node num = ps->nodes[nd];
        if (parse_number(ps, &num) != OK)
            return FALL_BACK;
        ps->nodes[nd] = num;
        return OK;
    }
    }
}

/* The document: one object (a state.json that is anything else is not well
 * formed), with nothing but whitespace around it. */
static step parse_document(struct parser *ps, const unsigned char *data, size_t n)
{
    ps->p = data;
    ps->end = data + n;
    ps->tcap = n;
    ps->text = malloc(n ? n : 1);
    if (!ps->text)
        return FALL_BACK;
    skip_ws(ps);
    size_t root;
    if (ps->p >= ps->end || *ps->p != '{' || parse_value(ps, 0, &root) != OK)
        return FALL_BACK;
    skip_ws(ps);
    return ps->p == ps->end ? OK : FALL_BACK;
}

/* ---- ocistate.well_formed ---- */

enum { T_STR = 1, T_INT = 2, T_NONE = 4, T_DICT = 8, T_LIST = 16, T_BOOL = 32 };

/* runv/ocistate.py's STATE_FIELDS, one per line (the tests compare the two). */
static const struct field {
    const char *name;
    unsigned types;
} STATE_FIELDS[] = {
    {"id", T_STR},
    {"bundle", T_STR},
    {"status", T_STR},
    {"pid", T_INT},
    {"pid_start", T_INT | T_NONE},
    {"qemu_pid", T_INT},
    {"rootfs", T_STR},
    {"created", T_STR},
    {"annotations", T_DICT},
    {"exit_code", T_INT | T_NONE},
    {"accel", T_STR},
    {"netns", T_STR},
    {"hooks", T_DICT},
    {"cgroup", T_STR},
    {"cgroup_made", T_LIST | T_NONE},
    {"qemu_start", T_INT | T_NONE},
    {"netns_path", T_STR},
    {"taps", T_DICT},
    {"resources", T_DICT},
    {"guest_memory_mb", T_INT},
    {"guest_ram_mb", T_INT},
    {"shared_ram", T_BOOL},
    {"pod", T_BOOL},
    {"sandbox", T_STR},
};

static const char *const STATUSES[] = {"creating", "created", "running", "paused", "stopped"};

/* The JSON type as Python's isinstance sees it, a bool being no int here. */
static unsigned type_of(const struct node *nd)
{
    switch (nd->kind) {
    case J_NULL: return T_NONE;
    case J_FALSE:
    case J_TRUE: return T_BOOL;
    case J_INT: return T_INT;
    case J_STR: return T_STR;
    case J_ARR: return T_LIST;
    case J_OBJ: return T_DICT;
    default: return 0; /* a float is none of them */
    }
}

static bool equals(const char *s, size_t n, const char *t)
{
    return strlen(t) == n && memcmp(s, t, n) == 0;
}

static const struct node *member(const struct parser *ps, const struct node *obj, const char *name)
{
    for (size_t c = obj->first; c != NONE; c = ps->nodes[c].next)
        if (equals(ps->nodes[c].key, ps->nodes[c].keylen, name))
            return &ps->nodes[c];
    return NULL;
}

/* An int as a small value: 0 <= v < PID_LIMIT, or -1 for any other int. */
static long small_int(const struct node *nd)
{
    if (nd->n == 1 && nd->s[0] == '0')
        return 0; /* also -0 */
    if (nd->neg || nd->n > 7)
        return -1;
    long v = 0;
    for (size_t i = 0; i < nd->n; i++)
        v = v * 10 + (nd->s[i] - '0');
    return v < PID_LIMIT ? v : -1;
}

static bool all_strings(const struct parser *ps, const struct node *parent)
{
    for (size_t c = parent->first; c != NONE; c = ps->nodes[c].next)
        if (ps->nodes[c].kind != J_STR)
            return false;
    return true;
}

static bool well_formed(const struct parser *ps, const struct node *data, const char *id, size_t idlen)
{
    const struct node *nd = member(ps, data, "id");
    if (!nd || nd->kind != J_STR || nd->n != idlen || memcmp(nd->s, id, idlen) != 0)
        return false;
    for (size_t i = 0; i < sizeof STATE_FIELDS / sizeof *STATE_FIELDS; i++)
        if ((nd = member(ps, data, STATE_FIELDS[i].name)) && !(type_of(nd) & STATE_FIELDS[i].types))
            return false;
    if ((nd = member(ps, data, "status"))) {
        bool known = false;
        for (size_t i = 0; i < sizeof STATUSES / sizeof *STATUSES; i++)
            known = known || equals(nd->s, nd->n, STATUSES[i]);
        if (!known)
            return false;
    }
    if ((nd = member(ps, data, "pid")) && small_int(nd) < 0)
        return false;
    if ((nd = member(ps, data, "qemu_pid")) && small_int(nd) < 0)
        return false;
    if ((nd = member(ps, data, "cgroup_made")) && nd->kind == J_ARR && !all_strings(ps, nd))
        return false;
    if ((nd = member(ps, data, "annotations")) && !all_strings(ps, nd))
        return false;
    if ((nd = member(ps, data, "taps")) && !all_strings(ps, nd))
        return false;
    return true;
}

/* ---- proc.start_time, proc.alive, ocistate.live_status ---- */

enum { GONE = 0, THERE = 1 };

/* The start time of pid (its decimal digits), GONE, or FALL_BACK on a stat
 * file this program does not read as Python does. */
static int start_time(long pid, char *digits, size_t size)
{
    char path[64], stat[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return GONE; /* any OSError */
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, stat + n, sizeof stat - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            if (r < 0)
                return FALL_BACK;
            break;
        }
        n += (size_t)r;
        if (n == sizeof stat) {
            close(fd);
            return FALL_BACK;
        }
    }
    /* The command name may contain spaces and parentheses: split after the last ')'. */
    size_t paren = n;
    while (paren > 0 && stat[paren - 1] != ')')
        paren--;
    if (paren == 0)
        return FALL_BACK;
    size_t i = paren + 1; /* Python skips the ')' and one character more */
    int field = 0;
    for (;;) {
        while (i < n && (stat[i] == ' ' || (stat[i] >= '\t' && stat[i] <= '\r')))
            i++;
        if (i >= n)
            return FALL_BACK;
        size_t start = i;
        while (i < n && !(stat[i] == ' ' || (stat[i] >= '\t' && stat[i] <= '\r')))
            i++;
        if (field == 0 && i - start == 1 && stat[start] == 'Z')
            return GONE; /* a zombie */
        if (field == 19) {
            size_t len = i - start;
            if (len >= size || len > 19)
                return FALL_BACK;
            for (size_t k = start; k < i; k++)
                if (stat[k] < '0' || stat[k] > '9')
                    return FALL_BACK;
            /* int() drops leading zeros; the kernel writes none */
            if (len > 1 && stat[start] == '0')
                return FALL_BACK;
            memcpy(digits, stat + start, len);
            digits[len] = '\0';
            return THERE;
        }
        field++;
    }
}

/* Whether pid is still the process that started at `started` (NULL: unknown). */
static int alive(long pid, const struct node *started)
{
    if (pid <= 0)
        return false;
    char now[32];
    int r = start_time(pid, now, sizeof now);
    if (r != THERE)
        return r == GONE ? false : FALL_BACK;
    if (!started)
        return true;
    if (started->n == 1 && started->s[0] == '0')
        return strcmp(now, "0") == 0;
    return !started->neg && equals(started->s, started->n, now);
}

static const char *live_status(const char *recorded, long pid, const struct node *started)
{
    int live;
    if (strcmp(recorded, "creating") == 0) {
        if (!pid)
            return recorded;
        if ((live = alive(pid, started)) == FALL_BACK)
            return NULL;
        return live ? recorded : "stopped";
    }
    if (strcmp(recorded, "stopped") != 0) {
        if ((live = alive(pid, started)) == FALL_BACK)
            return NULL;
        if (!live)
            return "stopped";
    }
    return recorded;
}

/* ---- tinyjson.dumps ---- */

/* _json.encode_basestring_ascii of a valid UTF-8 string. */
static step put_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (put(b, "\"", 1) != OK)
        return FALL_BACK;
    for (size_t i = 0, k; i < n; i += k) {
        uint32_t c;
        if (!(k = utf8_char((const unsigned char *)s + i, n - i, &c)))
            return FALL_BACK;
        char esc[12];
        size_t m = 0;
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            esc[m++] = (char)c;
        } else if (c == '\\' || c == '"') {
            esc[m++] = '\\', esc[m++] = (char)c;
        } else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
            esc[m++] = '\\';
            esc[m++] = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else {
            uint32_t units[2] = {c, 0};
            size_t nu = 1;
            if (c >= 0x10000) {
                units[0] = 0xd800 + ((c - 0x10000) >> 10);
                units[1] = 0xdc00 + ((c - 0x10000) & 0x3ff);
                nu = 2;
            }
            for (size_t u = 0; u < nu; u++) {
                esc[m++] = '\\', esc[m++] = 'u';
                for (int shift = 12; shift >= 0; shift -= 4)
                    esc[m++] = hex[(units[u] >> shift) & 0xf];
            }
        }
        if (put(b, esc, m) != OK)
            return FALL_BACK;
    }
    return put(b, "\"", 1);
}

/* One `"key": ` line of the top-level object, after its first. */
static step put_key(struct buf *b, const char *key, bool first)
{
    if (puts_(b, first ? "{\n  \"" : ",\n  \"") != OK || puts_(b, key) != OK)
        return FALL_BACK;
    return puts_(b, "\": ");
}

static step put_str_field(struct buf *b, const char *key, const struct node *nd)
{
    if (put_key(b, key, false) != OK)
        return FALL_BACK;
    return nd ? put_string(b, nd->s, nd->n) : puts_(b, "\"\"");
}

/* print(tinyjson.dumps(oci_state(data))): json.dumps(indent=2)'s layout. */
static step oci_state(const struct parser *ps, const struct node *data, struct buf *b)
{
    const struct node *status = member(ps, data, "status");
    const struct node *pid_node = member(ps, data, "pid");
    const struct node *start = member(ps, data, "pid_start");
    long pid = pid_node ? small_int(pid_node) : 0;
    char recorded[16] = "";
    if (status) {
        if (status->n >= sizeof recorded)
            return FALL_BACK;
        memcpy(recorded, status->s, status->n);
        recorded[status->n] = '\0';
    }
    const char *now = live_status(recorded, pid, start && start->kind == J_INT ? start : NULL);
    if (!now)
        return FALL_BACK;
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%ld", strcmp(now, "stopped") != 0 ? pid : 0L);

    const struct node *id = member(ps, data, "id");
    const struct node *annotations = member(ps, data, "annotations");
    if (put_key(b, "ociVersion", true) != OK || puts_(b, "\"" OCI_VERSION "\"") != OK ||
        put_key(b, "id", false) != OK || put_string(b, id->s, id->n) != OK ||
        put_key(b, "pid", false) != OK || puts_(b, pidtext) != OK ||
        put_key(b, "status", false) != OK || put_string(b, now, strlen(now)) != OK ||
        put_str_field(b, "bundle", member(ps, data, "bundle")) != OK ||
        put_str_field(b, "rootfs", member(ps, data, "rootfs")) != OK ||
        put_str_field(b, "created", member(ps, data, "created")) != OK ||
        put_key(b, "annotations", false) != OK)
        return FALL_BACK;
    if (!annotations || annotations->count == 0) {
        if (puts_(b, "{}") != OK)
            return FALL_BACK;
    } else {
        const char *sep = "{\n    ";
        for (size_t c = annotations->first; c != NONE; c = ps->nodes[c].next) {
            const struct node *a = &ps->nodes[c];
            if (puts_(b, sep) != OK || put_string(b, a->key, a->keylen) != OK || puts_(b, ": ") != OK ||
                put_string(b, a->s, a->n) != OK)
                return FALL_BACK;
            sep = ",\n    ";
        }
        if (puts_(b, "\n  }") != OK)
            return FALL_BACK;
    }
    return puts_(b, ",\n  \"owner\": \"\"\n}\n");
}

/* ---- fast._state_request and fast.entry ---- */

/* The index of the first argument after the global flags (fast._state_request's
 * forms), with --root's value in *root and whether --debug was given; -1 if a
 * flag is not one of those. */
static int global_flags(int argc, char **argv, const char **root, bool *debug)
{
    *root = DEFAULT_ROOT;
    *debug = false;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *eq = strchr(argv[i], '=');
        size_t flen = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        bool root_flag = flen == 6 && strncmp(argv[i], "--root", 6) == 0;
        if (root_flag || (flen == 5 && strncmp(argv[i], "--log", 5) == 0) ||
            (flen == 12 && strncmp(argv[i], "--log-format", 12) == 0)) {
            const char *value = eq ? eq + 1 : NULL;
            if (!eq) {
                if (++i == argc)
                    return -1;
                value = argv[i];
            }
            if (root_flag)
                *root = value;
        } else if (flen == 7 && strncmp(argv[i], "--debug", 7) == 0) {
            *debug = true;
        } else {
            return -1;
        }
        i++;
    }
    return i;
}

/* (root, id) if argv is `[global flags] state ID`, else FALL_BACK. */
static step state_request(int argc, char **argv, const char **root, const char **id)
{
    bool debug;
    int i = global_flags(argc, argv, root, &debug);
    if (i < 0 || argc - i != 2 || strcmp(argv[i], "state") != 0 || argv[i + 1][0] == '-')
        return FALL_BACK;
    *id = argv[i + 1];
    return OK;
}

/* os.path.join(root, id, "state.json") */
static step state_path(struct buf *b, const char *root, const char *id)
{
    if (puts_(b, root) != OK || (b->len && b->p[b->len - 1] != '/' && put(b, "/", 1) != OK) ||
        puts_(b, id) != OK || (b->len && b->p[b->len - 1] != '/' && put(b, "/", 1) != OK) ||
        put(b, "state.json", 11) != OK) /* with its NUL */
        return FALL_BACK;
    return OK;
}

static step read_file(const char *path, struct buf *b)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return FALL_BACK; /* os.path.isfile */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FALL_BACK;
    char chunk[16384];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || b->len + (size_t)r > MAX_STATE || put(b, chunk, (size_t)r) != OK) {
            close(fd);
            return r == 0 ? OK : FALL_BACK;
        }
    }
}

/* Write all of out on stdout: OK, or FALL_BACK if nothing was written (Python
 * then meets the same error and answers it its way). EPIPE is Python's quiet
 * exit 1, at any point. */
static step write_out(const struct buf *out)
{
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, &old) != 0)
        return FALL_BACK;
    size_t done = 0;
    while (done < out->len) {
        ssize_t w = write(STDOUT_FILENO, out->p + done, out->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EPIPE)
            exit(1);
        if (w <= 0) {
            if (done)
                exit(1);
            sigaction(SIGPIPE, &old, NULL);
            return FALL_BACK;
        }
        done += (size_t)w;
    }
    return OK;
}

/* Answer `runv state ID` and exit, or return to let Python answer. */
static void answer_state(int argc, char **argv)
{
    const char *root, *id;
    if (state_request(argc, argv, &root, &id) != OK)
        return;
    size_t idlen = strlen(id);
    if (root[0] != '/' || strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return;
    struct buf path = {0}, file = {0}, out = {0};
    struct parser ps = {0};
    if (state_path(&path, root, id) != OK || read_file(path.p, &file) != OK || file.len == 0)
        return;
    /* A non-ASCII byte is read as Python reads it only if Python decodes UTF-8. */
    bool is_ascii = ascii((const unsigned char *)id, idlen) && ascii((unsigned char *)file.p, file.len);
    if (!is_ascii && (!python_reads_utf8() || !valid_utf8((const unsigned char *)id, idlen) ||
                      !valid_utf8((unsigned char *)file.p, file.len)))
        return;
    if (!stdout_is_ascii_compatible() || parse_document(&ps, (unsigned char *)file.p, file.len) != OK ||
        !well_formed(&ps, &ps.nodes[0], id, idlen) || oci_state(&ps, &ps.nodes[0], &out) != OK ||
        write_out(&out) != OK)
        return;
    exit(0);
}

/* state.check_id: 1 to 255 of [A-Za-z0-9_+.-], not "." or "..". */
static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 255 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return false;
    for (const char *c = id; *c; c++)
        if (!(isalnum((unsigned char)*c) && (unsigned char)*c < 0x80) && !strchr("_+-.", *c))
            return false;
    return true;
}

/* `runv [global flags] delete --force ID` (or -f) of a container that does not
 * exist: nothing to do, and exit 0, as commands/delete.py and runc do. Engines
 * run it after every `delete` (docker: each `docker run --rm`). Without
 * --debug only: Python would log at debug level. */
static void answer_delete_missing(int argc, char **argv)
{
    const char *root;
    bool debug;
    int i = global_flags(argc, argv, &root, &debug);
    if (i < 0 || debug || argc - i != 3 || strcmp(argv[i], "delete") != 0 ||
        (strcmp(argv[i + 1], "--force") != 0 && strcmp(argv[i + 1], "-f") != 0))
        return;
    const char *id = argv[i + 2];
    struct buf path = {0};
    struct stat st;
    if (root[0] != '/' || !valid_id(id) || puts_(&path, root) != OK || put(&path, "/", 1) != OK ||
        puts_(&path, id) != OK || put(&path, "", 1) != OK)
        return;
    if (lstat(path.p, &st) != 0 && errno == ENOENT)
        exit(0);
}

/* Everything else: the Python path, unchanged. */
static void exec_python(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)argc - 1 : 0;
    char **args = calloc(n + 4, sizeof *args);
    if (args) {
        args[0] = RUNV_PYTHON;
        args[1] = "-S";
        args[2] = RUNV_SCRIPT;
        if (n)
            memcpy(args + 3, argv + 1, n * sizeof *args);
        execv(RUNV_PYTHON, args);
    }
    fprintf(stderr, "runv: cannot run %s: %s\n", RUNV_PYTHON, strerror(errno));
    exit(127);
}

int main(int argc, char **argv)
{
    answer_state(argc, argv);
    answer_delete_missing(argc, argv);
    exec_python(argc, argv);
}
