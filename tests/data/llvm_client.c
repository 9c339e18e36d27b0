/* Test client for `ternc compile` objects (tests/llvm_aot.rs).
 *
 *   cc -DMODEL=net -include net.h llvm_client.c net.o -lm -o client
 *   ./client INPUT.bin OUT THRESH NMS
 *
 * INPUT.bin holds the network input as raw little-endian float32 [C,H,W]. Runs
 * MODEL_run twice (the second run must give the same bits: no hidden state), writes
 * output i to OUT.i.bin, then runs MODEL_detect and writes one line per box to
 * OUT.boxes.txt: "cls score x0 y0 x1 y1". Exit status: 0 ok, 1 usage or I/O, 3 the
 * runs differ, 4 a size mismatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASTE2(a, b) a##_##b
#define PASTE(a, b) PASTE2(a, b)
#define API(x) PASTE(MODEL, x)

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s INPUT.bin OUT THRESH NMS\n", argv[0]);
        return 1;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *input = malloc(bytes);
    if (!input || fread(input, 1, bytes, f) != (size_t)bytes) { perror("read"); return 1; }
    fclose(f);

    int n = 0;
    while (API(output_size)(n) > 0) n++;
    float **out = calloc(n, sizeof *out), **again = calloc(n, sizeof *again);
    for (int i = 0; i < n; i++) {
        out[i] = malloc(API(output_size)(i) * sizeof(float));
        again[i] = malloc(API(output_size)(i) * sizeof(float));
    }
    void *ws = malloc(API(workspace_size)());
    if (!ws) { perror("workspace"); return 1; }
    if (API(run)(input, out, ws) != 0) return 1;
    /* scribble over the workspace: the result must not depend on it */
    memset(ws, 0x7f, API(workspace_size)());
    if (API(run)(input, again, ws) != 0) return 1;
    for (int i = 0; i < n; i++) {
        if (memcmp(out[i], again[i], API(output_size)(i) * sizeof(float)) != 0) {
            fprintf(stderr, "output %d differs between runs\n", i);
            return 3;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s.%d.bin", argv[2], i);
        FILE *o = fopen(path, "wb");
        if (!o || fwrite(out[i], sizeof(float), API(output_size)(i), o) != API(output_size)(i)) {
            perror(path);
            return 1;
        }
        fclose(o);
    }

    enum { MAX = 1000 };
    static API(box) boxes[MAX];
    int count = API(detect)(input, ws, (float)atof(argv[3]), (float)atof(argv[4]), boxes, MAX);
    char path[4096];
    snprintf(path, sizeof path, "%s.boxes.txt", argv[2]);
    FILE *o = fopen(path, "w");
    if (!o) { perror(path); return 1; }
    for (int i = 0; i < count; i++)
        fprintf(o, "%d %.9g %.9g %.9g %.9g %.9g\n", boxes[i].cls, boxes[i].score, boxes[i].x0, boxes[i].y0,
                boxes[i].x1, boxes[i].y1);
    fclose(o);
    printf("%d outputs, %d boxes\n", n, count);
    return 0;
}
