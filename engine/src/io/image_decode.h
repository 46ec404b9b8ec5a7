/*
 * image_decode.h — what the image loader (image.c) and its decoders
 * (image_png.c: libpng; image_jpeg.c: libjpeg-turbo; image_pnm.c: our own
 * strict reader of binary PNM) share. Private to the engine.
 *
 * A decoder reads the file's header, reports what it declares to the loader's
 * check (budget and file size, image.c) and decodes only if the check passes:
 * nothing the size of the image is allocated before. Every failure is a
 * negative MR_E* code with mr_error's message set; nothing is printed.
 */
#ifndef MR_IMAGE_DECODE_H
#define MR_IMAGE_DECODE_H

#include <stdint.h>
#include <stdio.h>

/* What a header declares. channels: the file's own count as the loader
 * reports it (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; a palette PNG counts as
 * RGB, or RGBA with a tRNS chunk; a CMYK JPEG as RGB); depth: 8 or 16 bits per
 * sample. */
struct mr_image_header {
    int width, height, channels, depth;
};

/* The loader's check, called once the header is read and before any pixel
 * is decoded: MR_OK to go on, or a negative code with the message set. */
typedef int (*mr_image_check_fn)(void *ctx, const struct mr_image_header *hdr);

/* Decoded samples, interleaved (HWC), row-major, top row first: width *
 * height * channels samples, uint8_t when depth is 8, host-order uint16_t
 * when 16. A sample s stands for the intensity s / maxval. channels may be
 * fewer than the header's when the decoder can give what was asked for
 * directly (a JPEG's luma as grey). Free data with free(). */
struct mr_image_pixels {
    void *data;
    int width, height, channels, depth;
    unsigned maxval;
};

/* Each decoder: f is open at offset 0; fn and path name the caller and the
 * file in messages; channels is what the caller asked for (0 = as in the
 * file), a hint the decoder may use; on success *out holds the samples (owned
 * by the caller), on failure out->data is NULL. */
int mr_image_decode_png(FILE *f, const char *fn, const char *path, int channels,
                        mr_image_check_fn check, void *ctx, struct mr_image_pixels *out);
int mr_image_decode_jpeg(FILE *f, const char *fn, const char *path, int channels,
                         mr_image_check_fn check, void *ctx,
                         struct mr_image_pixels *out);
int mr_image_decode_pnm(FILE *f, const char *fn, const char *path, int channels,
                        mr_image_check_fn check, void *ctx, struct mr_image_pixels *out);

#endif
