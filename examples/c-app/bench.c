/* Times yolo_run of an object compiled by `ternc compile ... -o yolo`.
 *
 *   ./bench [RUNS]
 *
 * Runs the network RUNS times (default 20) on a fixed pseudo-random input after one
 * warm-up run and prints the fastest and the median run in milliseconds, and a
 * checksum of the outputs (the same for every --threads). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "yolo.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    if (runs < 1 || runs > 100000) {
        fprintf(stderr, "usage: %s [RUNS]\n", argv[0]);
        return 2;
    }
    size_t n_in = (size_t)YOLO_INPUT_C * YOLO_INPUT_H * YOLO_INPUT_W;
    float *input = malloc(n_in * sizeof(float));
    float *outputs[YOLO_NUM_OUTPUTS];
    void *workspace = malloc(yolo_workspace_size());
    double *ms = malloc(runs * sizeof(double));
    if (!input || !workspace || !ms) { fprintf(stderr, "out of memory\n"); return 1; }
    unsigned state = 0x12345678u;
    for (size_t i = 0; i < n_in; i++) {
        state = state * 1664525u + 1013904223u;
        input[i] = (state >> 8) / 16777216.0f;
    }
    for (int i = 0; i < YOLO_NUM_OUTPUTS; i++) {
        outputs[i] = malloc(yolo_output_size(i) * sizeof(float));
        if (!outputs[i]) { fprintf(stderr, "out of memory\n"); return 1; }
    }
    yolo_run(input, outputs, workspace); /* warm-up */
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        yolo_run(input, outputs, workspace);
        ms[r] = now_ms() - t0;
    }
    double sum = 0;
    for (int i = 0; i < YOLO_NUM_OUTPUTS; i++)
        for (size_t k = 0; k < yolo_output_size(i); k++) sum += outputs[i][k];
    qsort(ms, runs, sizeof(double), by_value);
    printf("%d runs: fastest %.2f ms, median %.2f ms; output checksum %.6g\n", runs, ms[0], ms[runs / 2],
           sum);
    return 0;
}
