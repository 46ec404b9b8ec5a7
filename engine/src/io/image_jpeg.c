/*
 * JPEG in, through libjpeg-turbo's libjpeg API (Debian's libjpeg62-turbo-dev;
 * fuzzed continuously by OSS-Fuzz), with its accurate integer IDCT
 * (JDCT_ISLOW) and its default "fancy" (triangle-filter) chroma upsampling.
 *
 * Colours, as stb_image gave them before (so recipes see the same channels):
 *  - a grey JPEG is 1 channel; a YCbCr, RGB, CMYK or YCCK JPEG is 3 (RGB);
 *  - grey asked of a YCbCr JPEG is its luma Y, decoded without the chroma (the
 *    JFIF Y is the BT.601 luma); of an RGB or CMYK JPEG, the loader's integer
 *    BT.601 luma of the RGB (image.c);
 *  - CMYK and YCCK (Adobe's inverted CMYK; libjpeg turns YCCK into it) become
 *    RGB as R = C K / 255, rounded as x y / 255 = (t + (t >> 8)) >> 8 with
 *    t = x y + 128 (exact for 8-bit x, y: Blinn, "Three wrongs make a right",
 *    IEEE CG&A 1995).
 *
 * Errors and warnings: libjpeg reports an error through error_exit, which
 * must not return: it keeps libjpeg's message and longjmps back into
 * mr_image_decode_jpeg (the libjpeg documentation's way, example.c), which
 * frees everything and returns MR_EFORMAT with the message. A warning about
 * corrupt data (a truncated file, a bad Huffman code, a bad progression)
 * means libjpeg would fill pixels with grey and carry on: the loader refuses
 * the file instead, with the warning's message; warnings that leave every
 * pixel intact (extraneous bytes before a marker, an unknown JFIF version or
 * Adobe transform code, a bad ICC marker) are ignored. Nothing is printed.
 * Budgets: the loader's check sees the frame header's size before libjpeg
 * allocates the image's buffers; libjpeg's memory manager may use at most the
 * loader budget (max_memory_to_use); a progressive JPEG may have at most
 * MR_JPEG_MAX_SCANS scans (each scan is a pass over the whole image, so a
 * small file of many empty scans would otherwise cost minutes; libjpeg-turbo's
 * documentation suggests this limit).
 */
#include "../internal.h"
#include "image_decode.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define MR_JPEG_MAX_SCANS 500

/* Everything that must survive a longjmp lives here, outside the frame of the
 * function that calls setjmp (C11 7.13.2.1). err comes first: libjpeg hands
 * its callbacks cinfo->err, which is then the job. */
struct jpeg_job {
    struct jpeg_error_mgr err;
    jmp_buf jmp;
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress;
    int created;
    uint8_t *row; /* one CMYK row */
    struct mr_image_pixels px;
    int checked;                        /* the loader's check has run */
    int rc;                             /* the loader's check failed: its code */
    char msg[JMSG_LENGTH_MAX + 64];     /* libjpeg's message, or ours */
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_job *job = (struct jpeg_job *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    snprintf(job->msg, sizeof job->msg, "%s", buf);
    longjmp(job->jmp, 1);
}

/* level < 0: a warning; otherwise trace output. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return;
    switch (cinfo->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA: /* junk between segments, skipped */
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC:
        return;
    default:
        jpeg_on_error(cinfo);
    }
}

static void jpeg_on_output(j_common_ptr cinfo)
{
    (void)cinfo;
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MR_JPEG_MAX_SCANS) {
        struct jpeg_job *job = (struct jpeg_job *)cinfo->err;
        snprintf(job->msg, sizeof job->msg, "more than %d scans (a progressive JPEG needs about "
                 "10)", MR_JPEG_MAX_SCANS);
        longjmp(job->jmp, 1);
    }
}

/* x y / 255 rounded, for 8-bit x, y (see the top of the file). */
static uint8_t mul255(unsigned x, unsigned y)
{
    unsigned t = x * y + 128u;
    return (uint8_t)((t + (t >> 8)) >> 8);
}

/* The frame header (SOF) as the loader's check sees it: known once libjpeg
 * has read SOF, before the scan header it also needs. */
static struct mr_image_header jpeg_header(j_decompress_ptr cinfo)
{
    struct mr_image_header hdr = {(int)cinfo->image_width, (int)cinfo->image_height,
                                  cinfo->num_components == 1 ? 1 : 3, 8};
    if (cinfo->image_width > INT32_MAX || cinfo->image_height > INT32_MAX)
        hdr.width = hdr.height = 0; /* JPEG's sides are 16-bit: never */
    return hdr;
}

static int jpeg_run(struct jpeg_job *job, FILE *f, const char *fn, const char *path, int want,
                    mr_image_check_fn check, void *ctx)
{
    if (setjmp(job->jmp)) {
        if (job->rc)
            return job->rc;
        /* A file that stops or breaks after its frame header: the size it
         * declares is judged first (a 320-byte file declaring 65535x65535 is
         * named as a bomb, not as truncated). */
        if (!job->checked && job->cinfo.image_width > 0 && job->cinfo.image_height > 0) {
            struct mr_image_header hdr = jpeg_header(&job->cinfo);
            job->checked = 1;
            job->rc = check(ctx, &hdr);
            if (job->rc < 0)
                return job->rc;
        }
        return MR_EFORMAT;
    }
    j_decompress_ptr cinfo = &job->cinfo;
    job->created = 1; /* destroying a half-created object is safe: it frees what exists */
    jpeg_create_decompress(cinfo);
    cinfo->mem->max_memory_to_use = (long)mr_get_loader_budget();
    job->progress.progress_monitor = jpeg_on_progress;
    cinfo->progress = &job->progress;
    jpeg_stdio_src(cinfo, f);
    jpeg_read_header(cinfo, TRUE);

    J_COLOR_SPACE space = cinfo->jpeg_color_space;
    int file_c;
    switch (space) {
    case JCS_GRAYSCALE: file_c = 1; break;
    case JCS_YCbCr: case JCS_RGB: case JCS_CMYK: case JCS_YCCK: file_c = 3; break;
    default:
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: a JPEG of %d components in "
                        "an unknown colour space", fn, path, cinfo->num_components);
    }
    struct mr_image_header hdr = jpeg_header(cinfo);
    hdr.channels = file_c;
    job->checked = 1;
    int rc = check(ctx, &hdr);
    if (rc < 0) {
        job->rc = rc;
        return rc;
    }
    int cmyk = space == JCS_CMYK || space == JCS_YCCK;
    if (space == JCS_GRAYSCALE || (space == JCS_YCbCr && (want == 1 || want == 2)))
        cinfo->out_color_space = JCS_GRAYSCALE;
    else
        cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    cinfo->dct_method = JDCT_ISLOW;
    jpeg_start_decompress(cinfo);
    int out_c = cinfo->out_color_space == JCS_GRAYSCALE ? 1 : 3;
    if (cinfo->output_width != (JDIMENSION)hdr.width ||
        cinfo->output_height != (JDIMENSION)hdr.height ||
        cinfo->output_components != (cmyk ? 4 : out_c))
        return mr_error(MR_EFORMAT, "%s: '%s': libjpeg decodes %ux%ux%d, not the %dx%dx%d of its "
                        "header", fn, path, (unsigned)cinfo->output_height,
                        (unsigned)cinfo->output_width, cinfo->output_components, hdr.height,
                        hdr.width, cmyk ? 4 : out_c);

    /* Within the budget the check enforced: no overflow below. */
    size_t w = (size_t)hdr.width, row_bytes = w * (size_t)out_c;
    job->px.data = malloc(row_bytes * (size_t)hdr.height);
    if (cmyk)
        job->row = malloc(w * 4);
    if (!job->px.data || (cmyk && !job->row))
        return mr_error(MR_ENOMEM, "%s: out of memory for an image %d wide x %d high '%s'", fn, hdr.width,
                        hdr.height, path);
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *dst = (uint8_t *)job->px.data + (size_t)cinfo->output_scanline * row_bytes;
        JSAMPROW row = cmyk ? job->row : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: libjpeg returned no "
                            "row %u", fn, path, (unsigned)cinfo->output_scanline);
        if (cmyk)
            for (size_t x = 0; x < w; x++) {
                const uint8_t *s = job->row + 4 * x;
                for (int k = 0; k < 3; k++)
                    dst[3 * x + (size_t)k] = mul255(s[k], s[3]);
            }
    }
    job->px.width = hdr.width;
    job->px.height = hdr.height;
    job->px.channels = out_c;
    job->px.depth = 8;
    job->px.maxval = 255;
    return MR_OK;
}

int mr_image_decode_jpeg(FILE *f, const char *fn, const char *path, int channels,
                         mr_image_check_fn check, void *ctx, struct mr_image_pixels *out)
{
    memset(out, 0, sizeof *out);
    struct jpeg_job *job = calloc(1, sizeof *job);
    if (!job)
        return mr_error(MR_ENOMEM, "%s: out of memory starting libjpeg for '%s'", fn, path);
    job->cinfo.err = jpeg_std_error(&job->err);
    job->err.error_exit = jpeg_on_error;
    job->err.emit_message = jpeg_on_message;
    job->err.output_message = jpeg_on_output;
    int rc = jpeg_run(job, f, fn, path, channels, check, ctx);
    if (rc == MR_EFORMAT && !job->rc && job->msg[0])
        rc = mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: %s", fn, path, job->msg);
    if (job->created)
        jpeg_destroy_decompress(&job->cinfo);
    free(job->row);
    if (rc < 0)
        free(job->px.data);
    else
        *out = job->px;
    free(job);
    return rc;
}
