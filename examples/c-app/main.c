/* A detector in plain C around an object compiled by `ternc compile ... -o yolo`.
 *
 *   ./app IMAGE.ppm [NAMES] [THRESH]
 *
 * Reads a binary PPM (P6, 8-bit), letterboxes it to the network size as Darknet does
 * (bilinear resize keeping the aspect ratio, centred on a 0.5 grey canvas), calls
 * yolo_detect and prints one line per box in pixels of the original image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yolo.h"

typedef struct { int w, h; unsigned char *rgb; } image;

static int skip_space_and_comments(FILE *f) {
    int c;
    for (;;) {
        c = fgetc(f);
        if (c == '#') { while (c != '\n' && c != EOF) c = fgetc(f); }
        else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return c;
    }
}

static int read_int(FILE *f, int *v) {
    int c = skip_space_and_comments(f);
    if (c < '0' || c > '9') return 0;
    *v = 0;
    while (c >= '0' && c <= '9') { *v = *v * 10 + (c - '0'); c = fgetc(f); }
    return 1; /* the single whitespace after the number is consumed */
}

static int load_ppm(const char *path, image *im) {
    FILE *f = fopen(path, "rb");
    int maxval;
    if (!f) { perror(path); return 0; }
    if (fgetc(f) != 'P' || fgetc(f) != '6' || !read_int(f, &im->w) || !read_int(f, &im->h) ||
        !read_int(f, &maxval) || maxval != 255 || im->w <= 0 || im->h <= 0) {
        fprintf(stderr, "%s: not a binary 8-bit PPM (P6)\n", path);
        fclose(f);
        return 0;
    }
    size_t n = (size_t)im->w * im->h * 3;
    im->rgb = malloc(n);
    if (!im->rgb || fread(im->rgb, 1, n, f) != n) { fprintf(stderr, "%s: short file\n", path); fclose(f); return 0; }
    fclose(f);
    return 1;
}

/* Pixel (x, y) of channel c, 0..1. */
static float px(const image *im, int x, int y, int c) {
    if (x >= im->w) x = im->w - 1;
    if (y >= im->h) y = im->h - 1;
    return im->rgb[((size_t)y * im->w + x) * 3 + c] / 255.0f;
}

/* Darknet's letterbox: new size by integer math, bilinear resize, 0.5 border. */
static void letterbox(const image *im, float *out, int net_w, int net_h, int *new_w, int *new_h) {
    if ((float)net_w / im->w < (float)net_h / im->h) { *new_w = net_w; *new_h = im->h * net_w / im->w; }
    else { *new_h = net_h; *new_w = im->w * net_h / im->h; }
    int dx = (net_w - *new_w) / 2, dy = (net_h - *new_h) / 2;
    float sx = (float)(im->w - 1) / (*new_w > 1 ? *new_w - 1 : 1);
    float sy = (float)(im->h - 1) / (*new_h > 1 ? *new_h - 1 : 1);
    for (size_t i = 0; i < (size_t)3 * net_w * net_h; i++) out[i] = 0.5f;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < *new_h; y++)
            for (int x = 0; x < *new_w; x++) {
                float fx = x * sx, fy = y * sy;
                int ix = (int)fx, iy = (int)fy;
                float ax = fx - ix, ay = fy - iy;
                float v = (1 - ay) * ((1 - ax) * px(im, ix, iy, c) + ax * px(im, ix + 1, iy, c)) +
                          ay * ((1 - ax) * px(im, ix, iy + 1, c) + ax * px(im, ix + 1, iy + 1, c));
                out[((size_t)c * net_h + y + dy) * net_w + x + dx] = v;
            }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s IMAGE.ppm [NAMES] [THRESH]\n", argv[0]);
        return 2;
    }
    image im;
    if (!load_ppm(argv[1], &im)) return 2;
    char *names[1000] = {0};
    if (argc > 2) {
        FILE *f = fopen(argv[2], "r");
        char line[256];
        for (int i = 0; f && i < 1000 && fgets(line, sizeof line, f); i++) {
            line[strcspn(line, "\r\n")] = 0;
            names[i] = malloc(strlen(line) + 1);
            if (names[i]) strcpy(names[i], line);
        }
        if (f) fclose(f);
    }
    float thresh = argc > 3 ? (float)atof(argv[3]) : 0.25f;

    const int W = YOLO_INPUT_W, H = YOLO_INPUT_H;
    float *input = malloc(sizeof(float) * YOLO_INPUT_C * H * W);
    void *workspace = malloc(yolo_workspace_size());
    if (!input || !workspace) { fprintf(stderr, "out of memory\n"); return 1; }
    int new_w, new_h;
    letterbox(&im, input, W, H, &new_w, &new_h);

    yolo_box boxes[256];
    int n = yolo_detect(input, workspace, thresh, 0.45f, boxes, 256);
    /* relative to the network input -> pixels of the image (Darknet's correct_yolo_boxes) */
    float ox = (W - new_w) / 2.0f / W, oy = (H - new_h) / 2.0f / H;
    float rx = (float)new_w / W, ry = (float)new_h / H;
    for (int i = 0; i < n; i++) {
        yolo_box b = boxes[i];
        float x0 = (b.x0 - ox) / rx * im.w, x1 = (b.x1 - ox) / rx * im.w;
        float y0 = (b.y0 - oy) / ry * im.h, y1 = (b.y1 - oy) / ry * im.h;
        x0 = x0 < 0 ? 0 : x0 > im.w ? im.w : x0;
        x1 = x1 < 0 ? 0 : x1 > im.w ? im.w : x1;
        y0 = y0 < 0 ? 0 : y0 > im.h ? im.h : y0;
        y1 = y1 < 0 ? 0 : y1 > im.h ? im.h : y1;
        if (b.cls >= 0 && b.cls < 1000 && names[b.cls]) printf("%s: %.0f%%", names[b.cls], 100 * b.score);
        else printf("class %d: %.0f%%", b.cls, 100 * b.score);
        printf("  box (%.0f, %.0f) - (%.0f, %.0f)\n", x0, y0, x1, y1);
    }
    return 0;
}
