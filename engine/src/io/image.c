/*
 * Images in and PNG out.
 *
 * In: PNG (libpng, image_png.c), JPEG (libjpeg-turbo, image_jpeg.c) and binary
 * PNM (P5, P6: our own strict reader, image_pnm.c), told by their magic
 * numbers; every other format is refused by name (see img_format). Each
 * decoder reads the header and hands its size to img_check, which checks it
 * against the loader budget and the file's size (img_check_size) before any
 * pixel is decoded. A sample s of a file whose maximum value is M (255 for
 * 8 bits, 65535 for 16; a PNM's own) becomes the float32 s / M, in a
 * (1, C, H, W) tensor. Channel conversion is the loader's own, the integer
 * arithmetic of stb_image, which read images here before (so numbers did not
 * change): grey = the ITU-R BT.601 luma (77 R + 150 G + 29 B) >> 8 of the
 * integer samples, a missing alpha is opaque (M), an alpha channel is dropped
 * when fewer channels are asked for. Resizing (Sean Barrett's public-domain
 * stb_image_resize, from Debian's libstb-dev, compiled here and hidden by the
 * library's default visibility) uses a triangle (bilinear) filter whose
 * support widens by the scale factor when shrinking, so downsampling averages
 * like PIL's BILINEAR; edges clamp; the result is clamped back to [0, 1].
 *
 * Out: PNG through stb_image_write (it only ever encodes the engine's own
 * pixels, never parses a file), 8 bits per sample,
 * v -> round(255 * clamp(v, 0, 1)), NaN -> 0.
 */
#include "../internal.h"
#include "image_decode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
/* stb_image_resize asserts that each output pixel's filter weights sum to
 * within 10% of 1 before it normalizes them to sum to 1; for some ratios
 * (72 -> 50 rows, found by engine/fuzz/fuzz_image.c) they sum to a little
 * more, and the normalization that follows is still right (a constant image
 * stays constant: tests/loaders_spec.lua). Release builds (NDEBUG) compile
 * the assertion out; it is compiled out everywhere, so no build aborts on it
 * and every build computes the same numbers. The arguments are checked
 * before stb is called. */
#define STBIR_ASSERT(x) ((void)0)
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Largest side accepted for a resize target and for a PNG written. */
#define MR_IMAGE_MAX_SIDE (1 << 15)

/* ------------------------------------------------------------- formats */

/* The formats read, told by their magic numbers, and the most pixels one
 * byte of each can expand to:
 *  - PNG: deflate expands at most 1032:1, and a raw byte holds at most 8
 *    (1-bit) pixels: 8256 pixels per byte.
 *  - JPEG: every 8x8 block of every component costs at least one bit (the DC
 *    code of a progressive first scan): at most 64 * 8 = 512 pixels per byte;
 *    1024 leaves room for chroma subsampling.
 *  - PNM: binary P5 / P6 only, all samples stored: checked exactly.
 * GIF and BMP are refused by name: the images a classifier is explained on
 * are photographs (JPEG) or lossless exports of data sets (PNG, PNM), and any
 * tool converts a GIF or BMP to PNG without loss; each decoder kept is one
 * more parser a shared file can reach. TGA, PSD, HDR, PIC and the rest have
 * no decoder here at all. */
enum img_fmt { IMG_UNKNOWN, IMG_PNG, IMG_JPEG, IMG_PNM, IMG_GIF, IMG_BMP };

static enum img_fmt img_format(const uint8_t *m, size_t n)
{
    if (n >= 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMG_PNG;
    if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF)
        return IMG_JPEG;
    if (n >= 2 && m[0] == 'P' && (m[1] == '5' || m[1] == '6'))
        return IMG_PNM;
    if (n >= 6 && (memcmp(m, "GIF87a", 6) == 0 || memcmp(m, "GIF89a", 6) == 0))
        return IMG_GIF;
    if (n >= 2 && m[0] == 'B' && m[1] == 'M')
        return IMG_BMP;
    return IMG_UNKNOWN;
}

static const char *img_format_name(enum img_fmt f)
{
    switch (f) {
    case IMG_PNG: return "PNG";
    case IMG_JPEG: return "JPEG";
    case IMG_PNM: return "PNM";
    case IMG_GIF: return "GIF";
    case IMG_BMP: return "BMP";
    default: return "unknown";
    }
}

/* Checks the header's declared size against the loader budget and the file's
 * real size, before anything is decoded. */
static int img_check_size(const char *fn, const char *path, enum img_fmt fmt, int64_t file_bytes,
                          int w, int h, int file_c, int is16, int c, int oh, int ow)
{
    int64_t px = 0, decoded = 0, resized = 0;
    int cmax = MR_MAX(c, file_c);
    int overflow = mr_size_mul(w, h, &px) || mr_size_mul(px, cmax, &decoded) ||
                   mr_size_mul(decoded, (int64_t)sizeof(float), &decoded);
    char nbytes[32];
    if (overflow)
        snprintf(nbytes, sizeof nbytes, "more than 2^63");
    else
        snprintf(nbytes, sizeof nbytes, "%lld", (long long)decoded);
    MR_TRY(mr_loader_check(overflow ? -1 : decoded,
                           "%s: '%s' declares an image %d wide x %d high of %d channel%s (%s bytes as float32 "
                           "samples)", fn, path, w, h, cmax, cmax == 1 ? "" : "s", nbytes));
    if (mr_size_mul(oh, ow, &resized) || mr_size_mul(resized, (int64_t)c * 4, &resized))
        resized = -1;
    MR_TRY(mr_loader_check(resized, "%s: resizing '%s' to %d wide x %d high with %d channel%s needs "
                           "%lld bytes", fn, path, ow, oh, c, c == 1 ? "" : "s", (long long)resized));
    /* The least the file must hold for that size. */
    int64_t need = 0;
    const char *what;
    switch (fmt) {
    case IMG_PNM: /* every sample stored, 1 or 2 bytes */
        mr_size_mul(px, (int64_t)file_c * (is16 ? 2 : 1), &need);
        what = "bytes of samples";
        break;
    case IMG_JPEG: need = px / 1024; what = "bytes at JPEG's 1024 pixels per byte"; break;
    default: need = px / 8256; what = "bytes at deflate's 8256 pixels per byte"; break;
    }
    if (need > file_bytes)
        return mr_error(MR_EFORMAT, "%s: '%s' declares a %s image %d wide x %d high, which needs at "
                        "least %lld %s, but the file has %lld bytes", fn, path, img_format_name(fmt), w, h,
                        (long long)need, what, (long long)file_bytes);
    return MR_OK;
}

/* What img_check needs to know of the call. */
struct img_request {
    const char *fn, *path;
    enum img_fmt fmt;
    int64_t file_bytes;
    int channels, height, width; /* as asked; 0 = as in the file */
};

/* The decoders' check (image_decode.h): a header with at least one pixel and
 * 1..4 channels, within the budget and the file's size. */
static int img_check(void *ctx, const struct mr_image_header *hdr)
{
    const struct img_request *r = ctx;
    int w = hdr->width, h = hdr->height, file_c = hdr->channels;
    if (w <= 0 || h <= 0 || file_c < 1 || file_c > 4)
        return mr_error(MR_EFORMAT, "%s: '%s' declares an image %d wide x %d high with %d channel%s: "
                        "an image needs at least one pixel and 1..4 channels", r->fn, r->path, w, h, file_c,
                        file_c == 1 ? "" : "s");
    int c = r->channels ? r->channels : file_c;
    return img_check_size(r->fn, r->path, r->fmt, r->file_bytes, w, h, file_c, hdr->depth == 16,
                          c, r->height ? r->height : h, r->width ? r->width : w);
}

/* Decoded samples (HWC, file_c channels of maximum value M) to floats s / M
 * with c channels, HWC, by the conversions of stb_image
 * (stbi__convert_format, stbi__convert_format16): grey = (77 R + 150 G +
 * 29 B) >> 8, a missing alpha is opaque (M). Each float is (float)s / (float)M,
 * one rounding, as the loader always computed it. */
static void img_to_float(float *dst, const struct mr_image_pixels *p, int c)
{
    size_t hw = (size_t)p->width * (size_t)p->height;
    int file_c = p->channels;
    const uint8_t *p8 = p->data;
    const uint16_t *p16 = p->data;
    unsigned maxval = p->maxval;
    float m = (float)maxval;
    for (size_t i = 0; i < hw; i++) {
        unsigned s[4] = {0, 0, 0, 0};
        for (int k = 0; k < file_c; k++) {
            size_t j = i * (size_t)file_c + (size_t)k;
            s[k] = p->depth == 16 ? p16[j] : p8[j];
        }
        float *d = dst + i * (size_t)c;
        unsigned grey, a = file_c == 2 ? s[1] : file_c == 4 ? s[3] : maxval;
        unsigned r = s[0], g = s[0], b = s[0];
        if (file_c >= 3) {
            g = s[1];
            b = s[2];
            grey = (r * 77u + g * 150u + b * 29u) >> 8;
        } else {
            grey = s[0];
        }
        switch (c) {
        case 1: d[0] = (float)grey; break;
        case 2: d[0] = (float)grey; d[1] = (float)a; break;
        case 3: d[0] = (float)r; d[1] = (float)g; d[2] = (float)b; break;
        default: d[0] = (float)r; d[1] = (float)g; d[2] = (float)b; d[3] = (float)a; break;
        }
        for (int k = 0; k < c; k++)
            d[k] /= m;
    }
}

int mr_image_load(mr_tensor **out, const char *path, int channels, int height, int width)
{
    static const char fn[] = "mr_image_load";
    if (!out)
        return mr_error(MR_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!path)
        return mr_error(MR_EINVAL, "%s: path is NULL", fn);
    if (channels < 0 || channels > 4)
        return mr_error(MR_EINVAL, "%s: channels must be 1 (grey), 3 (RGB), 2 or 4 (with alpha) "
                        "or 0 (as in the file), got %d", fn, channels);
    if (height < 0 || width < 0 || (height == 0) != (width == 0) || height > MR_IMAGE_MAX_SIDE ||
        width > MR_IMAGE_MAX_SIDE)
        return mr_error(MR_EINVAL, "%s: size must be 0x0 (keep) or both sides in 1..%d, got "
                        "%d wide x %d high", fn, MR_IMAGE_MAX_SIDE, width, height);

    int not_regular;
    FILE *f = mr_fopen_regular(path, &not_regular);
    if (!f)
        return not_regular ? mr_error(MR_EIO, "%s: '%s' is not a regular file", fn, path)
                           : mr_error(MR_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    /* The file's size and magic; then the decoder, from the start. */
    uint8_t magic[8];
    size_t nmagic = fread(magic, 1, sizeof magic, f);
    long file_bytes = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        file_bytes = ftell(f);
    if (file_bytes < 0 || fseek(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return mr_error(MR_EIO, "%s: '%s': cannot read its size: %s", fn, path, strerror(e));
    }
    enum img_fmt fmt = img_format(magic, nmagic);
    if (fmt == IMG_UNKNOWN || fmt == IMG_GIF || fmt == IMG_BMP) {
        fclose(f);
        if (fmt == IMG_UNKNOWN)
            return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: unknown image type (the "
                            "loader reads PNG, JPEG and binary PNM (P5, P6))", fn, path);
        return mr_error(MR_EFORMAT, "%s: '%s' is a %s file, which the loader refuses: it reads "
                        "PNG, JPEG and binary PNM (P5, P6); convert the image to PNG (lossless) "
                        "first", fn, path, img_format_name(fmt));
    }
    struct img_request req = {fn, path, fmt, (int64_t)file_bytes, channels, height, width};
    struct mr_image_pixels pix;
    int rc = fmt == IMG_PNG    ? mr_image_decode_png(f, fn, path, channels, img_check, &req, &pix)
             : fmt == IMG_JPEG ? mr_image_decode_jpeg(f, fn, path, channels, img_check, &req, &pix)
                               : mr_image_decode_pnm(f, fn, path, channels, img_check, &req, &pix);
    fclose(f);
    if (rc < 0)
        return rc;
    int w = pix.width, h = pix.height;
    int c = channels ? channels : pix.channels;
    int oh = height ? height : h, ow = width ? width : w;
    size_t hw = (size_t)w * (size_t)h; /* within the budget: no overflow */

    /* Samples as floats in [0, 1], still interleaved (HWC). */
    float *hwc = malloc(hw * (size_t)c * sizeof(float));
    if (!hwc) {
        free(pix.data);
        return mr_error(MR_ENOMEM, "%s: out of memory for an image %d wide x %d high '%s'", fn, w, h, path);
    }
    img_to_float(hwc, &pix, c);
    free(pix.data);

    float *src = hwc;
    if (oh != h || ow != w) {
        float *rs = malloc((size_t)oh * (size_t)ow * (size_t)c * sizeof(float));
        int alpha = (c == 2 || c == 4) ? c - 1 : STBIR_ALPHA_CHANNEL_NONE;
        if (!rs || !stbir_resize_float_generic(hwc, w, h, 0, rs, ow, oh, 0, c, alpha, 0,
                                               STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE,
                                               STBIR_COLORSPACE_LINEAR, NULL)) {
            free(rs);
            free(hwc);
            return mr_error(MR_ENOMEM, "%s: out of memory resizing '%s' from %d wide x %d high to "
                            "%d wide x %d high", fn, path, w, h, ow, oh);
        }
        free(hwc);
        src = rs;
    }

    int64_t shape[4] = {1, c, oh, ow};
    rc = mr_tensor_new(out, 4, shape);
    if (rc == MR_OK) {
        size_t ohw = (size_t)oh * (size_t)ow;
        float *x = (*out)->data;
        for (int k = 0; k < c; k++)
            for (size_t i = 0; i < ohw; i++) {
                float v = src[i * (size_t)c + (size_t)k];
                x[(size_t)k * ohw + i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
    }
    free(src);
    return rc;
}

struct png_sink {
    FILE *f;
    int err; /* errno of the first failed write, or -1 */
};

static void png_sink_write(void *ctx, void *data, int size)
{
    struct png_sink *s = ctx;
    if (s->err == 0 && fwrite(data, 1, (size_t)size, s->f) != (size_t)size)
        s->err = errno ? errno : -1;
}

/* stb_image_write works in int: it filters the rows into (W*C + 1) * H bytes
 * and deflates them into an array whose capacity doubles (2 m + 1, an int),
 * at most 9/8 of its input (literal codes of up to 9 bits). Up to 2^29
 * filtered bytes every such size stays below 2^30, clear of INT_MAX; past
 * it, the product (W*C + 1) * H wraps (a 32768x32768 RGBA image: 32768
 * bytes allocated for 4 GiB of rows). */
#define MR_PNG_MAX_FILTERED ((int64_t)1 << 29)

static int png_size_ok(const char *fn, int code, int64_t w, int64_t h, int64_t c)
{
    int64_t filtered;
    MR_TRY(MR_SIZE_PROD(&filtered, fn, "PNG filtered bytes (W*C+1)*H", w * c + 1, h));
    if (filtered > MR_PNG_MAX_FILTERED)
        return mr_error(code, "%s: a %lldx%lld PNG of %lld channels has (W*C+1)*H = %lld filtered bytes, "
                        "more than the %lld the PNG writer's int sizes allow", fn, (long long)h, (long long)w,
                        (long long)c, (long long)filtered, (long long)MR_PNG_MAX_FILTERED);
    return MR_OK;
}

/* The one place PNG bytes reach a file: open, encode, write, close, and report
 * whichever step fails. */
static int png_write(const char *fn, const char *path, const uint8_t *px, int w, int h, int c)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return mr_error(MR_EIO, "%s: cannot create '%s': %s", fn, path, strerror(errno));
    struct png_sink sink = {f, 0};
    errno = 0;
    int ok = stbi_write_png_to_func(png_sink_write, &sink, w, h, c, px, w * c);
    int close_err = fclose(f) != 0 ? errno : 0;
    if (!ok)
        return mr_error(MR_ENOMEM, "%s: encoding a %dx%dx%d PNG for '%s' failed (out of memory)",
                        fn, h, w, c, path);
    if (sink.err || close_err) {
        int e = sink.err ? sink.err : close_err;
        return mr_error(MR_EIO, "%s: writing '%s' failed: %s", fn, path,
                        e > 0 ? strerror(e) : "short write");
    }
    return MR_OK;
}

int mr_png_write_rgb8(const char *path, const uint8_t *pixels, int width, int height,
                      int channels)
{
    static const char fn[] = "mr_png_write_rgb8";
    if (!path || !pixels)
        return mr_error(MR_EINVAL, "%s: %s is NULL", fn, !path ? "path" : "pixels");
    if (channels < 1 || channels > 4)
        return mr_error(MR_EINVAL, "%s: channels must be 1..4, got %d", fn, channels);
    if (width < 1 || height < 1 || width > MR_IMAGE_MAX_SIDE || height > MR_IMAGE_MAX_SIDE)
        return mr_error(MR_EINVAL, "%s: size must be 1..%d on each side, got %d wide x %d high", fn,
                        MR_IMAGE_MAX_SIDE, width, height);
    MR_TRY(png_size_ok(fn, MR_EINVAL, width, height, channels));
    return png_write(fn, path, pixels, width, height, channels);
}

int mr_image_write_png(const char *path, const mr_tensor *img)
{
    static const char fn[] = "mr_image_write_png";
    if (!path || !img)
        return mr_error(MR_EINVAL, "%s: %s is NULL", fn, !path ? "path" : "img");
    char buf[64];
    int off;
    if (img->ndim == 3)
        off = 0;
    else if (img->ndim == 4 && img->shape[0] == 1)
        off = 1;
    else
        return mr_error(MR_ESHAPE, "%s: expected an image (C, H, W) or (1, C, H, W), got %s", fn,
                        mr_tensor_shape_str(img, buf, sizeof buf));
    int64_t c = img->shape[off], h = img->shape[off + 1], w = img->shape[off + 2];
    if (c != 1 && c != 3 && c != 4 && c != 2)
        return mr_error(MR_ESHAPE, "%s: %s has %lld channels; a PNG takes 1 (grey), 2 (grey + "
                        "alpha), 3 (RGB) or 4 (RGBA)", fn,
                        mr_tensor_shape_str(img, buf, sizeof buf), (long long)c);
    if (h > MR_IMAGE_MAX_SIDE || w > MR_IMAGE_MAX_SIDE)
        return mr_error(MR_ESHAPE, "%s: %s is larger than %d on a side", fn,
                        mr_tensor_shape_str(img, buf, sizeof buf), MR_IMAGE_MAX_SIDE);
    MR_TRY(png_size_ok(fn, MR_ESHAPE, w, h, c));
    size_t hw = (size_t)h * (size_t)w;
    uint8_t *px = malloc(hw * (size_t)c);
    if (!px)
        return mr_error(MR_ENOMEM, "%s: out of memory for an image %lld wide x %lld high", fn, (long long)w,
                        (long long)h);
    /* CHW floats -> HWC bytes. */
    for (int64_t k = 0; k < c; k++)
        for (size_t i = 0; i < hw; i++) {
            float v = img->data[(size_t)k * hw + i];
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN fails v > 0: it becomes 0 */
            px[i * (size_t)c + (size_t)k] = (uint8_t)(v * 255.0f + 0.5f);
        }
    int rc = png_write(fn, path, px, (int)w, (int)h, (int)c);
    free(px);
    return rc;
}
