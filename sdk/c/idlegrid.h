/*
 * idlegrid.h: the runtime API of an Idlegrid task, for C and C++ (and any language that can
 * call C functions and targets WASI preview 1).
 *
 * A task is a WASI program: build it with clang's WebAssembly target,
 *
 *     clang --target=wasm32-wasi -O2 -I sdk/c -o task.wasm task.c
 *
 * (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; elsewhere wasi-sdk,
 * with --sysroot pointing at its WASI sysroot.) Its main() reads its parameters, data elements
 * and checkpoint, computes, and ends with idlegrid_finish() (the result) or idlegrid_fail()
 * (a reason for the client). A long task calls idlegrid_control() now and then: on
 * IDLEGRID_STOP it saves a checkpoint and returns from main without a result; the task is
 * started again later, possibly on another computer, and idlegrid_restore() gives it the
 * checkpoint back. A restart is a start. On IDLEGRID_CHECKPOINT it saves one and goes on.
 * Past the stop's grace period the task is ended by force, so check often (every second or so).
 *
 * The functions are the same host calls as the Rust SDK (crates/guest), imported from the
 * module "idlegrid"; their names and codes are defined in crates/task-abi. This header needs
 * only the C standard library; helpers that allocate use malloc and the caller frees.
 * Everything here is static inline: include the header, there is no library to link.
 */
#ifndef IDLEGRID_H
#define IDLEGRID_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes (negative) of every call; lengths and OK are >= 0. */
#define IDLEGRID_OK 0
/* The named data element, or a checkpoint to restore from, does not exist. */
#define IDLEGRID_NOT_FOUND (-1)
/* The data is larger than the limit the job set (result, status or checkpoint size). */
#define IDLEGRID_TOO_LARGE (-2)
/* A pointer or length lies outside memory, or a name is not UTF-8 (or, in the helpers below,
 * a parameter or checkpoint does not have the expected form). */
#define IDLEGRID_BAD_ARGUMENT (-3)
/* The environment could not complete the call (a helper: memory could not be allocated). */
#define IDLEGRID_HOST_ERROR (-4)
/* idlegrid_finish or idlegrid_fail was already called. */
#define IDLEGRID_ALREADY_FINISHED (-5)

/* What idlegrid_control() returns: what the environment asks of the task right now. */
#define IDLEGRID_CONTINUE 0
/* Save a checkpoint and return from main soon, without a result. */
#define IDLEGRID_STOP 1
/* Save a checkpoint when convenient, then keep computing. */
#define IDLEGRID_CHECKPOINT 2

/* The raw host functions; pointers and lengths are in the task's memory. */
#if defined(__wasm__)
#define IDLEGRID_IMPORT(name) __attribute__((import_module("idlegrid"), import_name(#name)))
#else
#error "idlegrid.h is for WebAssembly tasks: compile with --target=wasm32-wasi"
#endif

IDLEGRID_IMPORT(params_len) int32_t idlegrid_raw_params_len(void);
IDLEGRID_IMPORT(params_read) int32_t idlegrid_raw_params_read(void *dst, int32_t len);
IDLEGRID_IMPORT(element_len) int64_t idlegrid_raw_element_len(const char *name, int32_t name_len);
IDLEGRID_IMPORT(element_read)
int32_t idlegrid_raw_element_read(const char *name, int32_t name_len, int64_t offset, void *dst, int32_t len);
IDLEGRID_IMPORT(checkpoint_len) int64_t idlegrid_raw_checkpoint_len(void);
IDLEGRID_IMPORT(checkpoint_read) int32_t idlegrid_raw_checkpoint_read(void *dst, int32_t len);
IDLEGRID_IMPORT(checkpoint_save) int32_t idlegrid_raw_checkpoint_save(const void *src, int32_t len);
IDLEGRID_IMPORT(status_set) int32_t idlegrid_raw_status_set(const void *src, int32_t len, float progress);
IDLEGRID_IMPORT(result_set) int32_t idlegrid_raw_result_set(const void *src, int32_t len);
IDLEGRID_IMPORT(fail) int32_t idlegrid_raw_fail(const void *src, int32_t len);
IDLEGRID_IMPORT(control) int32_t idlegrid_raw_control(void);

/* Lengths cross the boundary as int32: one call moves at most this many bytes. */
#define IDLEGRID_CALL_BYTES_MAX ((size_t)INT32_MAX)

static inline int32_t idlegrid_clamp_len(size_t len) {
    return len > IDLEGRID_CALL_BYTES_MAX ? INT32_MAX : (int32_t)len;
}

/* What a return code means, for messages. */
static inline const char *idlegrid_strerror(int64_t code) {
    switch (code) {
    case IDLEGRID_NOT_FOUND: return "not found";
    case IDLEGRID_TOO_LARGE: return "data exceeds the size limit set by the job";
    case IDLEGRID_BAD_ARGUMENT: return "invalid argument";
    case IDLEGRID_HOST_ERROR: return "the environment failed to complete the call";
    case IDLEGRID_ALREADY_FINISHED: return "a result or failure was already sent";
    default: return code >= 0 ? "ok" : "unknown error";
    }
}

/* ---- Parameters (P2.1: the task's initialization parameters) ---- */

/* The parameters as a NUL-terminated string (malloc'd; the caller frees), its length without
 * the NUL in *len when len is not NULL. NULL only if memory runs out. */
static inline char *idlegrid_params(size_t *len) {
    int32_t size = idlegrid_raw_params_len();
    if (size < 0) size = 0;
    char *text = (char *)malloc((size_t)size + 1);
    if (text == NULL) return NULL;
    int32_t copied = idlegrid_raw_params_read(text, size);
    if (copied < 0) copied = 0;
    text[copied] = '\0';
    if (len != NULL) *len = (size_t)copied;
    return text;
}

static inline bool idlegrid_is_param_separator(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '&' || c == ';';
}

/* One `key=value` parameter (pairs are separated by whitespace, '&' or ';', as in the Rust
 * SDK). Copies the value, NUL-terminated, into value[cap]; returns the value's length,
 * IDLEGRID_NOT_FOUND when the key is absent, IDLEGRID_TOO_LARGE when it does not fit. */
static inline int32_t idlegrid_param(const char *key, char *value, size_t cap) {
    char *text = idlegrid_params(NULL);
    if (text == NULL) return IDLEGRID_HOST_ERROR;
    size_t key_len = strlen(key);
    int32_t found = IDLEGRID_NOT_FOUND;
    char *pair = text;
    while (*pair != '\0' && found == IDLEGRID_NOT_FOUND) {
        while (*pair != '\0' && idlegrid_is_param_separator(*pair)) pair++;
        char *end = pair;
        while (*end != '\0' && !idlegrid_is_param_separator(*end)) end++;
        char *equals = (char *)memchr(pair, '=', (size_t)(end - pair));
        if (equals != NULL && (size_t)(equals - pair) == key_len && memcmp(pair, key, key_len) == 0) {
            size_t n = (size_t)(end - equals - 1);
            if (n + 1 > cap) {
                found = IDLEGRID_TOO_LARGE;
            } else {
                memcpy(value, equals + 1, n);
                value[n] = '\0';
                found = (int32_t)n;
            }
        }
        pair = end;
    }
    free(text);
    return found;
}

/* A whole-number parameter: *out is `fallback` when the key is absent. Returns IDLEGRID_OK,
 * or IDLEGRID_BAD_ARGUMENT when the value is not a whole number (report it with
 * idlegrid_failf). */
static inline int32_t idlegrid_param_u64(const char *key, uint64_t fallback, uint64_t *out) {
    char text[32];
    int32_t n = idlegrid_param(key, text, sizeof text);
    if (n == IDLEGRID_NOT_FOUND) {
        *out = fallback;
        return IDLEGRID_OK;
    }
    if (n <= 0) return IDLEGRID_BAD_ARGUMENT;
    uint64_t value = 0;
    for (int32_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') return IDLEGRID_BAD_ARGUMENT;
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) return IDLEGRID_BAD_ARGUMENT;
        value = value * 10 + digit;
    }
    *out = value;
    return IDLEGRID_OK;
}

/* ---- Data elements (P2.1) ---- */

/* Size in bytes of the data element attached under `name`, or IDLEGRID_NOT_FOUND. */
static inline int64_t idlegrid_element_len(const char *name) {
    return idlegrid_raw_element_len(name, idlegrid_clamp_len(strlen(name)));
}

/* Read part of element `name` from `offset` into dst[len]; returns the bytes read (fewer
 * than len only at the end of the element) or a negative code. Large elements are best read
 * in chunks, so that they need not fit in the task's memory. */
static inline int32_t idlegrid_element_read(const char *name, uint64_t offset, void *dst, size_t len) {
    return idlegrid_raw_element_read(name, idlegrid_clamp_len(strlen(name)), (int64_t)offset, dst,
                                     idlegrid_clamp_len(len));
}

/* The whole element `name` in *data (malloc'd; the caller frees) and its size in *len.
 * Returns IDLEGRID_OK or a negative code (then *data is NULL). */
static inline int32_t idlegrid_element(const char *name, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int64_t size = idlegrid_element_len(name);
    if (size < 0) return (int32_t)size;
    if ((uint64_t)size >= SIZE_MAX) return IDLEGRID_TOO_LARGE;
    uint8_t *buffer = (uint8_t *)malloc((size_t)size + 1);
    if (buffer == NULL) return IDLEGRID_HOST_ERROR;
    size_t filled = 0;
    while (filled < (size_t)size) {
        int32_t n = idlegrid_element_read(name, filled, buffer + filled, (size_t)size - filled);
        if (n < 0) {
            free(buffer);
            return n;
        }
        if (n == 0) break;
        filled += (size_t)n;
    }
    buffer[filled] = 0; /* so that text elements can be used as strings */
    *data = buffer;
    *len = filled;
    return IDLEGRID_OK;
}

/* ---- Checkpoints (P2.1, P2.2: a restart from a checkpoint is a start) ---- */

/* Save a checkpoint (replaces the previous one). If the task is interrupted, it starts again
 * and idlegrid_restore gives these bytes back. */
static inline int32_t idlegrid_checkpoint(const void *data, size_t len) {
    if (len > IDLEGRID_CALL_BYTES_MAX) return IDLEGRID_TOO_LARGE;
    return idlegrid_raw_checkpoint_save(data, (int32_t)len);
}

/* The checkpoint saved by an earlier run of this task, in *data (malloc'd; the caller frees)
 * and *len. Returns IDLEGRID_OK, IDLEGRID_NOT_FOUND on a first start, or another code. */
static inline int32_t idlegrid_restore(uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int64_t size = idlegrid_raw_checkpoint_len();
    if (size < 0) return (int32_t)size;
    if ((uint64_t)size > IDLEGRID_CALL_BYTES_MAX) return IDLEGRID_TOO_LARGE;
    uint8_t *buffer = (uint8_t *)malloc(size > 0 ? (size_t)size : 1);
    if (buffer == NULL) return IDLEGRID_HOST_ERROR;
    int32_t copied = idlegrid_raw_checkpoint_read(buffer, (int32_t)size);
    if (copied < 0) {
        free(buffer);
        return copied;
    }
    *data = buffer;
    *len = (size_t)copied;
    return IDLEGRID_OK;
}

/* Restore a fixed-size checkpoint (a struct) into dst[size]. Returns IDLEGRID_OK,
 * IDLEGRID_NOT_FOUND on a first start, or IDLEGRID_BAD_ARGUMENT when the saved checkpoint has
 * another size (it is not one this code wrote: fail rather than guess). */
static inline int32_t idlegrid_restore_into(void *dst, size_t size) {
    int64_t saved = idlegrid_raw_checkpoint_len();
    if (saved < 0) return (int32_t)saved;
    if ((uint64_t)saved != (uint64_t)size || size > IDLEGRID_CALL_BYTES_MAX) return IDLEGRID_BAD_ARGUMENT;
    int32_t copied = idlegrid_raw_checkpoint_read(dst, (int32_t)size);
    if (copied < 0) return copied;
    return (size_t)copied == size ? IDLEGRID_OK : IDLEGRID_BAD_ARGUMENT;
}

/* ---- Interim status and control (P2.1-P2.3) ---- */

/* Send an interim status (partial results, a message) with progress in 0..1. */
static inline int32_t idlegrid_set_status(const void *data, size_t len, float progress) {
    if (len > IDLEGRID_CALL_BYTES_MAX) return IDLEGRID_TOO_LARGE;
    return idlegrid_raw_status_set(data, (int32_t)len, progress);
}

/* Report progress in 0..1 without status data. */
static inline void idlegrid_progress(float progress) {
    (void)idlegrid_raw_status_set("", 0, progress);
}

/* What the environment asks now: IDLEGRID_CONTINUE, IDLEGRID_STOP or IDLEGRID_CHECKPOINT. */
static inline int32_t idlegrid_control(void) {
    return idlegrid_raw_control();
}

/* True when the environment asks the task to stop: save a checkpoint, then return from main
 * without a result (within the grace period, or the task is ended by force). */
static inline bool idlegrid_should_stop(void) {
    return idlegrid_raw_control() == IDLEGRID_STOP;
}

/* ---- The end of a task ---- */

/* Send the final result; the task should then return from main. */
static inline int32_t idlegrid_finish(const void *data, size_t len) {
    if (len > IDLEGRID_CALL_BYTES_MAX) return IDLEGRID_TOO_LARGE;
    return idlegrid_raw_result_set(data, (int32_t)len);
}

/* Send a text as the final result (without its NUL). */
static inline int32_t idlegrid_finish_text(const char *text) {
    return idlegrid_finish(text, strlen(text));
}

/* Report that the task failed, with a reason the client sees (UTF-8, at most 4 KiB kept). */
static inline int32_t idlegrid_fail(const char *reason) {
    return idlegrid_raw_fail(reason, idlegrid_clamp_len(strlen(reason)));
}

/* idlegrid_fail with a printf-style reason. */
static inline int32_t idlegrid_failf(const char *format, ...) __attribute__((format(printf, 1, 2)));
static inline int32_t idlegrid_failf(const char *format, ...) {
    char reason[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(reason, sizeof reason, format, args);
    va_end(args);
    return idlegrid_fail(reason);
}

#ifdef __cplusplus
}
#endif

#endif /* IDLEGRID_H */
