/* An error as the agent reports it to the host: an errno and a message. */
#ifndef RUNV_ERROR_H
#define RUNV_ERROR_H

struct error {
    int no;
    char msg[480];
};

/* Both return -1 so that callers can `return err_set(...)`.
 * err_set appends ": strerror(no)"; err_setx uses the message as it is. */
int err_set(struct error *e, int no, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_setx(struct error *e, int no, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
