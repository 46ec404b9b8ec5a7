/*
 * PNG in, through libpng (Debian's libpng-dev; fuzzed continuously by
 * OSS-Fuzz), with its low-level API so that no colour transform is applied
 * but the lossless ones listed here: samples come out as stored.
 *
 *  - palette -> RGB, and a tRNS chunk -> an alpha channel (0 where a pixel has
 *    the transparent colour or index alpha, as the PNG specification, 11.3.2.1);
 *  - 1, 2 and 4-bit grey -> 8 bits by the exact scaling v * 255 / (2^d - 1);
 *  - 16-bit samples kept, in host byte order;
 *  - interlaced images de-interlaced; gamma, sRGB and iCCP chunks ignored (a
 *    network sees the stored samples, as the tools that made its data did).
 *
 * Errors: libpng reports an error through the function given to
 * png_create_read_struct, which must not return; it keeps the message and
 * longjmps back into mr_image_decode_png (libpng's documented way, the
 * jmp_buf of png_jmpbuf), which frees everything and returns MR_EFORMAT with
 * libpng's message. Warnings (a bad ancillary chunk, skipped) are dropped:
 * nothing is printed. Budgets: the loader's check sees IHDR's size before
 * libpng allocates a row; ancillary chunks (compressed text, ICC profiles)
 * may not decompress to more than png_set_chunk_malloc_max allows.
 */
#include "../internal.h"
#include "image_decode.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Most bytes one ancillary chunk may occupy, decompressed (libpng's own
 * default, PNG_USER_CHUNK_MALLOC_MAX, is 8000000). */
#define MR_PNG_CHUNK_MAX (8ll << 20)

/* Everything that must survive a longjmp lives here, outside the frame of
 * the function that calls setjmp (C11 7.13.2.1: its own non-volatile locals
 * changed after setjmp are indeterminate after the jump). */
struct png_job {
    png_structp png;
    png_infop info;
    png_bytep *rows;
    struct mr_image_pixels px;
    int checked;  /* the loader's check has run */
    int rc;       /* the loader's check failed: its code (message set) */
    char msg[200]; /* libpng's message */
};

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_job *job = png_get_error_ptr(png);
    snprintf(job->msg, sizeof job->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* IHDR as the loader's check sees it: the channels once palette and tRNS
 * are expanded (tRNS, which comes after IHDR, adds an alpha channel). */
static struct mr_image_header png_header(png_structp png, png_infop info)
{
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color_type = png_get_color_type(png, info), bit_depth = png_get_bit_depth(png, info);
    int channels = color_type == PNG_COLOR_TYPE_GRAY ? 1
                   : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                   : color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                                                            : 3; /* RGB, palette */
    if (png_get_valid(png, info, PNG_INFO_tRNS) &&
        (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_RGB ||
         color_type == PNG_COLOR_TYPE_PALETTE))
        channels++;
    struct mr_image_header hdr = {(int)w, (int)h, channels, bit_depth == 16 ? 16 : 8};
    if (w > PNG_UINT_31_MAX || h > PNG_UINT_31_MAX) /* libpng refuses these: never */
        hdr.width = hdr.height = 0;
    return hdr;
}

static int png_run(struct png_job *job, FILE *f, const char *fn, const char *path,
                   mr_image_check_fn check, void *ctx)
{
    if (setjmp(png_jmpbuf(job->png))) {
        if (job->rc)
            return job->rc;
        /* A file that stops or breaks after IHDR: the size it declares is
         * judged first (a bomb is named as a bomb, not as a bad chunk). */
        if (!job->checked && png_get_image_width(job->png, job->info) > 0 &&
            png_get_image_height(job->png, job->info) > 0) {
            struct mr_image_header hdr = png_header(job->png, job->info);
            job->checked = 1;
            job->rc = check(ctx, &hdr);
            if (job->rc < 0)
                return job->rc;
        }
        return MR_EFORMAT;
    }
    png_structp png = job->png;
    png_infop info = job->info;
    int64_t budget = mr_get_loader_budget();
    png_init_io(png, f);
    /* The image's size is the loader budget's to judge (PNG's own limit is
     * 2^31 - 1 a side); ancillary chunks get libpng's default cap. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)(budget < MR_PNG_CHUNK_MAX ? budget
                                                                               : MR_PNG_CHUNK_MAX));
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, NULL, NULL, NULL);
    int trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    struct mr_image_header hdr = png_header(png, info);
    int channels = hdr.channels;
    job->checked = 1;
    int rc = check(ctx, &hdr);
    if (rc < 0) {
        job->rc = rc;
        return rc;
    }

    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (trns)
        png_set_tRNS_to_alpha(png);
    const uint16_t one = 1;
    if (bit_depth == 16 && *(const uint8_t *)&one == 1)
        png_set_swap(png); /* PNG stores 16-bit samples big-endian */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != channels || png_get_bit_depth(png, info) != hdr.depth)
        return mr_error(MR_EFORMAT, "%s: '%s': libpng decodes %d channels of %d bits, not the %d "
                        "of %d bits its header implies", fn, path, png_get_channels(png, info),
                        png_get_bit_depth(png, info), channels, hdr.depth);

    /* Within the budget the check enforced: no overflow below. */
    size_t row_bytes = (size_t)w * (size_t)channels * (size_t)(hdr.depth / 8);
    if (png_get_rowbytes(png, info) != row_bytes)
        return mr_error(MR_EFORMAT, "%s: '%s': libpng's rows hold %zu bytes, not %zu", fn, path,
                        (size_t)png_get_rowbytes(png, info), row_bytes);
    job->px.data = malloc(row_bytes * (size_t)h);
    job->rows = malloc((size_t)h * sizeof *job->rows);
    if (!job->px.data || !job->rows)
        return mr_error(MR_ENOMEM, "%s: out of memory for a %ux%u image '%s'", fn, (unsigned)h,
                        (unsigned)w, path);
    for (png_uint_32 y = 0; y < h; y++)
        job->rows[y] = (png_bytep)job->px.data + (size_t)y * row_bytes;
    png_read_image(png, job->rows);
    job->px.width = (int)w;
    job->px.height = (int)h;
    job->px.channels = channels;
    job->px.depth = hdr.depth;
    job->px.maxval = hdr.depth == 16 ? 65535u : 255u;
    return MR_OK;
}

int mr_image_decode_png(FILE *f, const char *fn, const char *path, int channels,
                        mr_image_check_fn check, void *ctx, struct mr_image_pixels *out)
{
    (void)channels; /* the loader converts channels itself, as stb_image did */
    memset(out, 0, sizeof *out);
    struct png_job job;
    memset(&job, 0, sizeof job);
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    if (job.png)
        job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        png_destroy_read_struct(job.png ? &job.png : NULL, NULL, NULL);
        return mr_error(MR_ENOMEM, "%s: out of memory starting libpng for '%s'", fn, path);
    }
    int rc = png_run(&job, f, fn, path, check, ctx);
    if (rc == MR_EFORMAT && !job.rc && job.msg[0])
        rc = mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: %s", fn, path, job.msg);
    png_destroy_read_struct(&job.png, &job.info, NULL);
    free(job.rows);
    if (rc < 0) {
        free(job.px.data);
        return rc;
    }
    *out = job.px;
    return MR_OK;
}
