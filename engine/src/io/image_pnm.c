/*
 * Binary PNM in: P5 (grey) and P6 (RGB), 8 or 16 bits per sample, read by
 * this small strict reader (the format is a text header and raw samples;
 * Netpbm's pgm(5) and ppm(5) pages define it).
 *
 * Header: "P5" or "P6", then width, height and maximum value M as decimal
 * numbers, separated by whitespace and '#' comments (to the end of the line),
 * then exactly one whitespace character, then height rows of width pixels of
 * 1 (P5) or 3 (P6) samples: one byte each when M < 256, else two, most
 * significant first. A sample s stands for the intensity s / M, and must not
 * exceed M. Refused: a number of more than 9 digits, M outside 1..65535, a
 * sample over M, samples cut short by the end of the file. A missing number
 * reads as 0, so a header cut short declares a 0-pixel image, which the
 * loader refuses by name. Only the first image of a multi-image file is read.
 */
#include "../internal.h"
#include "image_decode.h"

#include <stdlib.h>
#include <string.h>

static int pnm_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Whitespace and comments, then a number of at most 9 digits (0 when there
 * are none); *c holds the character after it. */
static int pnm_number(FILE *f, int *c, const char *fn, const char *path, const char *what,
                      int *value)
{
    for (;;) {
        while (pnm_space(*c))
            *c = getc(f);
        if (*c != '#')
            break;
        while (*c != EOF && *c != '\n' && *c != '\r')
            *c = getc(f);
    }
    int v = 0, digits = 0;
    while (*c >= '0' && *c <= '9') {
        if (++digits > 9)
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: its PNM %s has more "
                            "than 9 digits", fn, path, what);
        v = v * 10 + (*c - '0');
        *c = getc(f);
    }
    *value = v;
    return MR_OK;
}

int mr_image_decode_pnm(FILE *f, const char *fn, const char *path, int channels,
                        mr_image_check_fn check, void *ctx, struct mr_image_pixels *out)
{
    (void)channels; /* the loader converts channels */
    memset(out, 0, sizeof *out);
    int p0 = getc(f), p1 = getc(f);
    if (p0 != 'P' || (p1 != '5' && p1 != '6'))
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: not a binary PNM (P5 or "
                        "P6)", fn, path);
    int file_c = p1 == '5' ? 1 : 3;
    int w = 0, h = 0, maxval = 0, rc;
    int c = getc(f);
    if ((rc = pnm_number(f, &c, fn, path, "width", &w)) < 0 ||
        (rc = pnm_number(f, &c, fn, path, "height", &h)) < 0 ||
        (rc = pnm_number(f, &c, fn, path, "maximum value", &maxval)) < 0)
        return rc;
    if (w > 0 && h > 0) {
        if (maxval < 1 || maxval > 65535)
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: its PNM maximum value "
                            "is %d, not in 1..65535", fn, path, maxval);
        if (!pnm_space(c))
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: its PNM header does "
                            "not end with one whitespace character after the maximum value", fn,
                            path);
    }
    int depth = maxval > 255 ? 16 : 8;
    struct mr_image_header hdr = {w, h, file_c, depth};
    if ((rc = check(ctx, &hdr)) < 0)
        return rc;

    /* Within the budget the check enforced: no overflow below. */
    size_t n = (size_t)w * (size_t)h * (size_t)file_c, bytes = n * (size_t)(depth / 8);
    long offset = ftell(f);
    uint8_t *raw = malloc(bytes ? bytes : 1);
    if (!raw)
        return mr_error(MR_ENOMEM, "%s: out of memory for an image %d wide x %d high '%s'", fn, w, h, path);
    size_t got = fread(raw, 1, bytes, f);
    if (got != bytes) {
        free(raw);
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: its PNM samples end after "
                        "%zu of %zu bytes (from byte offset %ld)", fn, path, got, bytes, offset);
    }
    if (depth == 16) { /* big-endian in the file: to host order, in place */
        uint16_t *s = (uint16_t *)(void *)raw;
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)raw[2 * i] << 8 | raw[2 * i + 1];
            s[i] = (uint16_t)v;
        }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v = depth == 16 ? ((uint16_t *)(void *)raw)[i] : raw[i];
        if (v > (unsigned)maxval) {
            free(raw);
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: PNM sample %zu is %u, "
                            "over the maximum value %d", fn, path, i, v, maxval);
        }
    }
    out->data = raw;
    out->width = w;
    out->height = h;
    out->channels = file_c;
    out->depth = depth;
    out->maxval = (unsigned)maxval;
    return MR_OK;
}
