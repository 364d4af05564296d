/*
 * Counts lines, words and bytes of a data element (like `wc`), in C, reading it in chunks so
 * that elements larger than the task's memory work. Parameter: `element=NAME` (default
 * `text`). Result: `lines words bytes` as text, as the Rust example (examples/tasks/wordcount).
 *
 *     clang --target=wasm32-wasi -O2 -I sdk/c -o wordcount.wasm examples/c/wordcount.c
 */
#include <inttypes.h>

#include "idlegrid.h"

#define CHUNK (64 * 1024)

static bool is_space(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f';
}

int main(void) {
    char name[256] = "text";
    int32_t given = idlegrid_param("element", name, sizeof name);
    if (given < 0 && given != IDLEGRID_NOT_FOUND) {
        idlegrid_fail("parameter element is too long");
        return 0;
    }
    int64_t len = idlegrid_element_len(name);
    if (len < 0) {
        idlegrid_failf("data element '%s': %s", name, idlegrid_strerror(len));
        return 0;
    }
    static uint8_t buffer[CHUNK];
    uint64_t lines = 0, words = 0, offset = 0;
    bool in_word = false;
    while (offset < (uint64_t)len) {
        int32_t n = idlegrid_element_read(name, offset, buffer, sizeof buffer);
        if (n < 0) {
            idlegrid_failf("reading data element '%s': %s", name, idlegrid_strerror(n));
            return 0;
        }
        if (n == 0) break;
        for (int32_t i = 0; i < n; i++) {
            if (buffer[i] == '\n') lines++;
            bool space = is_space(buffer[i]);
            if (!space && !in_word) words++;
            in_word = !space;
        }
        offset += (uint64_t)n;
        idlegrid_progress((float)offset / (float)len);
    }
    char result[80];
    snprintf(result, sizeof result, "%" PRIu64 " %" PRIu64 " %" PRIu64, lines, words, offset);
    idlegrid_finish_text(result);
    return 0;
}
