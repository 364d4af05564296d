/*
 * Monte Carlo estimate of pi, in C: count random points of the unit square inside the quarter
 * circle. Parameters: `samples=N seed=S`. Result: `inside total` as text. The same contract and
 * the same random numbers as the Rust example (examples/tasks/pi), so both give the same result
 * for the same parameters. Checkpoints after every chunk, so an interrupted task resumes where
 * it stopped and still gives that result; with `report=1` the result also says where its last
 * start began (` resumed_from=N`), to see that at work.
 *
 *     clang --target=wasm32-wasi -O2 -I sdk/c -o pi.wasm examples/c/pi.c
 */
#include <inttypes.h>

#include "idlegrid.h"

#define CHUNK (UINT64_C(1) << 20)

/* What a checkpoint holds: fixed-size fields, written and read by this program only. */
struct state {
    uint64_t done;
    uint64_t inside;
    uint64_t rng;
};

/* xorshift64*: small, fast, and deterministic for a given seed, so replicas agree. */
static double next_double(uint64_t *rng) {
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return (double)((x * UINT64_C(0x2545F4914F6CDD1D)) >> 11) / 9007199254740992.0; /* 2^53 */
}

int main(void) {
    uint64_t samples, seed, report;
    if (idlegrid_param_u64("samples", 1000000, &samples) != IDLEGRID_OK) {
        idlegrid_fail("parameter samples is not a whole number");
        return 0;
    }
    if (idlegrid_param_u64("seed", 1, &seed) != IDLEGRID_OK) {
        idlegrid_fail("parameter seed is not a whole number");
        return 0;
    }
    if (idlegrid_param_u64("report", 0, &report) != IDLEGRID_OK) {
        idlegrid_fail("parameter report is not a whole number");
        return 0;
    }

    struct state state;
    int32_t restored = idlegrid_restore_into(&state, sizeof state);
    if (restored == IDLEGRID_NOT_FOUND) {
        /* xorshift must not start at zero. */
        state = (struct state){.done = 0, .inside = 0, .rng = (seed * UINT64_C(0x9E3779B97F4A7C15)) | 1};
    } else if (restored != IDLEGRID_OK) {
        idlegrid_failf("checkpoint is corrupt: %s", idlegrid_strerror(restored));
        return 0;
    }
    uint64_t resumed_from = state.done;

    while (state.done < samples) {
        uint64_t n = samples - state.done < CHUNK ? samples - state.done : CHUNK;
        for (uint64_t i = 0; i < n; i++) {
            double x = next_double(&state.rng);
            double y = next_double(&state.rng);
            if (x * x + y * y <= 1.0) state.inside++;
        }
        state.done += n;
        int32_t saved = idlegrid_checkpoint(&state, sizeof state);
        if (saved != IDLEGRID_OK) {
            idlegrid_failf("cannot save a checkpoint: %s", idlegrid_strerror(saved));
            return 0;
        }
        if (idlegrid_should_stop()) return 0; /* suspended: the checkpoint is kept */
        idlegrid_progress((float)state.done / (float)samples);
    }

    char result[80];
    int length = snprintf(result, sizeof result, "%" PRIu64 " %" PRIu64, state.inside, state.done);
    if (report) snprintf(result + length, sizeof result - (size_t)length, " resumed_from=%" PRIu64, resumed_from);
    idlegrid_finish_text(result);
    return 0;
}
