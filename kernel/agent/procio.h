/* A process's stdio (procio.c): pipes or a pty in the guest, STDIN/STDOUT/STDERR
 * frames on the port, with the per-stream window of docs/protocol.md. It calls
 * nothing above it: the process table asks it (io_drain) whether a process is done. */
#ifndef RUNV_PROCIO_H
#define RUNV_PROCIO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct outstream { int fd, ended, eos, watched; uint32_t unacked; };
struct io {
    uint32_t stream; /* on the port, and in the epoll keys (KEY_IO) */
    struct outstream out[2]; /* stdout, stderr */
    int in_fd, in_watched, in_closing, pty;
    char *inbuf;
    size_t inlen, incap;
};

void io_init(struct io *io, uint32_t stream);
/* Pipes: the child's ends into child[3], ours into io. */
int io_pipes(struct io *io, int child[3], struct error *e);
/* A pty master (from the child) serves stdin and stdout; there is no stderr. */
void io_set_pty(struct io *io, int master);
/* Starts forwarding output (once the process runs). */
void io_start(struct io *io);
/* An epoll event on the fd of role (0 stdin, 1 stdout, 2 stderr). */
void io_event(struct io *io, int role);
/* STDIN (len 0: close), ACK (which 1 stdout, 2 stderr) and WINSIZE from the host. */
void io_stdin(struct io *io, const uint8_t *buf, size_t len);
void io_ack(struct io *io, uint32_t which, uint32_t n);
void io_winsize(struct io *io, uint16_t rows, uint16_t cols);
/* After the process exited: forwards what is left within the window; 1 once both streams ended. */
int io_drain(struct io *io);
void io_close(struct io *io);

int pty_open(int *master, int *slave, char *slave_path, size_t size, struct error *e);

#endif
