/*
 * Images in and PNG out, through Sean Barrett's public-domain stb libraries
 * (Debian's libstb-dev headers; their implementations are compiled here, once,
 * hidden by the library's default visibility, so nothing of stb is exported).
 *
 * In: PNG, JPEG, BMP, GIF's first frame and binary PNM, told by their magic
 * numbers (other formats stb_image reads are refused: see img_format). The
 * header is read first and its size checked against the loader budget and the
 * file's size (img_check_size) before any pixel is decoded. 8-bit samples
 * become x / 255 and 16-bit PNG / PNM samples x / 65535 (a PNM's big-endian, as
 * the format says), in a (1, C, H, W) tensor. Channel conversion is stb_image's
 * (grey = the ITU-R BT.601 luma (77 R + 150 G + 29 B) / 256; an alpha channel
 * is dropped when fewer channels are asked for). Resizing uses a triangle
 * (bilinear) filter whose support widens by the scale factor when shrinking, so
 * downsampling averages like PIL's BILINEAR; edges clamp; the result is clamped
 * back to [0, 1].
 *
 * Out: PNG, 8 bits per sample, v -> round(255 * clamp(v, 0, 1)), NaN -> 0.
 */
#include "../internal.h"

#include <errno.h>
#include <stdatomic.h>
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
/* Decoders the engine refuses anyway (see img_format) are not compiled, so no
 * file can reach them, not even by failing another format's header check
 * (stb_image tries every decoder in turn). */
#define STBI_NO_TGA
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Largest side accepted for a resize target and for a PNG written. */
#define MR_IMAGE_MAX_SIDE (1 << 15)

/* ------------------------------------------------------------ loader budget */

static atomic_llong loader_budget;

int mr_set_loader_budget(int64_t bytes)
{
    atomic_store(&loader_budget, bytes > 0 ? (long long)bytes : 0);
    return MR_OK;
}

int64_t mr_get_loader_budget(void)
{
    long long b = atomic_load(&loader_budget);
    return b > 0 ? b : (int64_t)MR_LOADER_BUDGET_MIB << 20;
}

/* ------------------------------------------------------------- formats */

/* The formats read, told by their magic numbers before stb_image sees the
 * file, and the most pixels one byte of each can expand to:
 *  - PNG: deflate expands at most 1032:1, and a raw byte holds at most 8
 *    (1-bit) pixels: 8256 pixels per byte.
 *  - JPEG: every 8x8 block of every component costs at least one bit (the DC
 *    code of a progressive first scan): at most 64 * 8 = 512 pixels per byte;
 *    1024 leaves room for chroma subsampling.
 *  - GIF: one 12-bit LZW code emits at most 4096 pixels: 2731 per byte.
 *  - BMP: uncompressed (stb reads no RLE), at least 1 bit per pixel: 8.
 *  - PNM: binary P5 / P6 only, all samples stored: checked exactly.
 * TGA (no magic number: stb guesses it from any file), PSD, HDR and PIC are
 * refused: no recipe needs them, and each is one more decoder a shared file
 * could reach. */
enum img_fmt { IMG_UNKNOWN, IMG_PNG, IMG_JPEG, IMG_GIF, IMG_BMP, IMG_PNM };

static enum img_fmt img_format(const uint8_t *m, size_t n)
{
    if (n >= 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMG_PNG;
    if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF)
        return IMG_JPEG;
    if (n >= 6 && (memcmp(m, "GIF87a", 6) == 0 || memcmp(m, "GIF89a", 6) == 0))
        return IMG_GIF;
    if (n >= 2 && m[0] == 'B' && m[1] == 'M')
        return IMG_BMP;
    if (n >= 2 && m[0] == 'P' && (m[1] == '5' || m[1] == '6'))
        return IMG_PNM;
    return IMG_UNKNOWN;
}

static const char *img_format_name(enum img_fmt f)
{
    switch (f) {
    case IMG_PNG: return "PNG";
    case IMG_JPEG: return "JPEG";
    case IMG_GIF: return "GIF";
    case IMG_BMP: return "BMP";
    case IMG_PNM: return "PNM";
    default: return "unknown";
    }
}

/* stb_image 2.27 (Debian's) builds each JPEG Huffman table into an array of
 * 257 code sizes without checking that the table's 16 code counts add up to
 * at most 256: a crafted DHT segment writes past it (found by
 * engine/fuzz/fuzz_image.c). A valid table (ITU-T T.81, B.2.4.2) holds at most
 * 256 symbols, and at most 2^L codes of length L. So before stb reads a JPEG,
 * the loader walks the file's markers — skipping the entropy-coded data of
 * each scan, where 0xFF is followed by 0x00 or a restart marker — and refuses
 * any DHT segment (tables may also come between the scans of a progressive
 * JPEG) that breaks either rule. Anything else malformed is left to stb. */
static int jpeg_check_tables(FILE *f, const char *fn, const char *path)
{
    if (fseek(f, 2, SEEK_SET) != 0) /* after SOI (FF D8) */
        return MR_OK;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c != 0xFF)
            continue; /* entropy-coded data, or junk stb will judge */
        int m;
        while ((m = getc(f)) == 0xFF) {
        }
        if (m == EOF || m == 0xD9) /* EOI */
            break;
        if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7))
            continue; /* stuffed byte, TEM, SOI, restart: no length */
        int hi = getc(f), lo = getc(f);
        if (hi == EOF || lo == EOF)
            break;
        long len = (long)(hi << 8 | lo) - 2;
        if (len < 0)
            break;
        if (m != 0xC4) { /* not DHT: skip the segment */
            if (fseek(f, len, SEEK_CUR) != 0)
                break;
            continue;
        }
        while (len > 0) { /* as stb reads it: a table as long as any segment is left */
            int tc_th = getc(f);
            int counts[16], total = 0;
            for (int i = 0; i < 16; i++) {
                counts[i] = getc(f);
                if (counts[i] == EOF) /* stb would read zeros past the end and go on */
                    return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: JPEG Huffman "
                                    "table %d is cut short by the end of the file", fn, path, tc_th);
                if (counts[i] > (1 << (i + 1)))
                    return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: JPEG Huffman "
                                    "table %d declares %d codes of length %d (at most %d exist)",
                                    fn, path, tc_th, counts[i], i + 1, 1 << (i + 1));
                total += counts[i];
            }
            if (total > 256)
                return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: JPEG Huffman table "
                                "%d declares %d symbols (at most 256)", fn, path, tc_th, total);
            len -= 17 + total;
            if (fseek(f, total, SEEK_CUR) != 0)
                return MR_OK;
        }
        if (len > 0 && fseek(f, len, SEEK_CUR) != 0)
            break;
    }
    return MR_OK;
}

/* stb_image 2.27 reads a PNM header's width, height and maximum value into an
 * int without an overflow check (UBSan: signed overflow in
 * stbi__pnm_getinteger; found by engine/fuzz/fuzz_image.c). The loader reads
 * the three numbers first, the way stb does (whitespace and '#' comments
 * between them), and refuses a number of more than 9 digits. */
static int pnm_check_header(FILE *f, const char *fn, const char *path)
{
    static const char *const what[3] = {"width", "height", "maximum value"};
    if (fseek(f, 2, SEEK_SET) != 0) /* after "P5" / "P6" */
        return MR_OK;
    int c = getc(f);
    for (int k = 0; k < 3; k++) {
        for (;;) { /* whitespace, then a comment to the end of its line */
            while (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r')
                c = getc(f);
            if (c != '#')
                break;
            while (c != EOF && c != '\n' && c != '\r')
                c = getc(f);
        }
        int digits = 0;
        while (c >= '0' && c <= '9') {
            if (++digits > 9)
                return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: its PNM %s has more "
                                "than 9 digits", fn, path, what[k]);
            c = getc(f);
        }
    }
    return MR_OK;
}

/* Checks the header's declared size against the loader budget and the file's
 * real size, before anything is decoded. */
static int img_check_size(const char *fn, const char *path, enum img_fmt fmt, int64_t file_bytes,
                          int w, int h, int file_c, int is16, int c, int oh, int ow)
{
    int64_t budget = mr_get_loader_budget(), px = 0, decoded = 0, resized = 0;
    int cmax = MR_MAX(c, file_c);
    int overflow = mr_size_mul(w, h, &px) || mr_size_mul(px, cmax, &decoded) ||
                   mr_size_mul(decoded, (int64_t)sizeof(float), &decoded);
    if (overflow || decoded > budget) {
        char nbytes[32];
        if (overflow)
            snprintf(nbytes, sizeof nbytes, "more than 2^63");
        else
            snprintf(nbytes, sizeof nbytes, "%lld", (long long)decoded);
        return mr_error(MR_ENOMEM, "%s: '%s' declares a %dx%d image of %d channel%s (%s bytes as "
                        "float32 samples), over the loader budget of %lld bytes "
                        "(mr_set_loader_budget)", fn, path, h, w, cmax, cmax == 1 ? "" : "s",
                        nbytes, (long long)budget);
    }
    if (mr_size_mul(oh, ow, &resized) || mr_size_mul(resized, (int64_t)c * 4, &resized) ||
        resized > budget)
        return mr_error(MR_ENOMEM, "%s: resizing '%s' to %dx%d with %d channels needs %lld "
                        "bytes, over the loader budget of %lld bytes (mr_set_loader_budget)", fn,
                        path, oh, ow, c, (long long)resized, (long long)budget);
    /* The least the file must hold for that size. */
    int64_t need = 0;
    const char *what;
    switch (fmt) {
    case IMG_PNM: /* every sample stored, 1 or 2 bytes */
        mr_size_mul(px, (int64_t)file_c * (is16 ? 2 : 1), &need);
        what = "bytes of samples";
        break;
    case IMG_BMP: need = (px + 7) / 8; what = "bytes at 1 bit per pixel"; break;
    case IMG_GIF: need = px / 2731; what = "bytes at LZW's 2731 pixels per byte"; break;
    case IMG_JPEG: need = px / 1024; what = "bytes at JPEG's 1024 pixels per byte"; break;
    default: need = px / 8256; what = "bytes at deflate's 8256 pixels per byte"; break;
    }
    if (need > file_bytes)
        return mr_error(MR_EFORMAT, "%s: '%s' declares a %dx%d %s image, which needs at least "
                        "%lld %s, but the file has %lld bytes", fn, path, h, w,
                        img_format_name(fmt), (long long)need, what, (long long)file_bytes);
    return MR_OK;
}

/* 16-bit samples to floats in [0, 1] with c channels from file_c, the
 * conversions of stb_image (stbi__convert_format16): grey = (77 R + 150 G +
 * 29 B) >> 8, a missing alpha is opaque. stb 2.27 converts a 16-bit PNM with its
 * 8-bit routine, reading past its buffer, so 16-bit files are decoded at their
 * own channel count and converted here. It also copies a 16-bit PNM's samples
 * as they lie in the file, big-endian (the PNM rule), without swapping them:
 * big_endian = 1 reads each sample's two bytes in file order. */
static void img_convert16(float *dst, const uint16_t *p, size_t hw, int file_c, int c,
                          int big_endian)
{
    for (size_t i = 0; i < hw; i++) {
        uint16_t s[4];
        for (int k = 0; k < file_c; k++) {
            const uint16_t *q = p + i * (size_t)file_c + (size_t)k;
            const uint8_t *b = (const uint8_t *)q;
            s[k] = big_endian ? (uint16_t)(b[0] << 8 | b[1]) : *q;
        }
        float *d = dst + i * (size_t)c;
        unsigned grey, a = file_c == 2 ? s[1] : file_c == 4 ? s[3] : 0xFFFFu;
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
            d[k] /= 65535.0f;
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
                        "%dx%d", fn, MR_IMAGE_MAX_SIDE, height, width);

    FILE *f = fopen(path, "rb");
    if (!f)
        return mr_error(MR_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    /* The file's size and magic, then stb's reading of the header only. */
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
    if (fmt == IMG_UNKNOWN) {
        fclose(f);
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: unknown image type (the "
                        "loader reads PNG, JPEG, BMP, GIF and binary PNM; TGA, PSD, HDR and PIC "
                        "are refused)", fn, path);
    }
    if (fmt == IMG_JPEG || fmt == IMG_PNM) {
        int rc = fmt == IMG_JPEG ? jpeg_check_tables(f, fn, path) : pnm_check_header(f, fn, path);
        if (rc < 0 || fseek(f, 0, SEEK_SET) != 0) {
            fclose(f);
            return rc < 0 ? rc : mr_error(MR_EIO, "%s: '%s': cannot seek", fn, path);
        }
    }
    int w = 0, h = 0, file_c = 0;
    if (!stbi_info_from_file(f, &w, &h, &file_c)) {
        fclose(f);
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: %s", fn, path,
                        stbi_failure_reason());
    }
    int is16 = stbi_is_16_bit_from_file(f);
    if (w <= 0 || h <= 0 || file_c < 1 || file_c > 4) {
        fclose(f);
        return mr_error(MR_EFORMAT, "%s: '%s' declares a %dx%d image with %d channels: an image "
                        "needs at least one pixel and 1..4 channels", fn, path, h, w, file_c);
    }
    int c = channels ? channels : file_c;
    int oh = height ? height : h, ow = width ? width : w;
    int rc = img_check_size(fn, path, fmt, (int64_t)file_bytes, w, h, file_c, is16, c, oh, ow);
    if (rc < 0) {
        fclose(f);
        return rc;
    }
    int dw = 0, dh = 0, dc = 0;
    void *pix = is16 ? (void *)stbi_load_from_file_16(f, &dw, &dh, &dc, 0)
                     : (void *)stbi_load_from_file(f, &dw, &dh, &dc, channels);
    fclose(f);
    if (!pix)
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: %s", fn, path,
                        stbi_failure_reason());
    if (dw != w || dh != h || (is16 && dc != file_c)) {
        stbi_image_free(pix);
        return mr_error(MR_EFORMAT, "%s: '%s' decoded as %dx%dx%d, not the %dx%dx%d of its "
                        "header", fn, path, dh, dw, dc, h, w, file_c);
    }
    size_t hw = (size_t)w * (size_t)h; /* within the budget: no overflow */

    /* Samples as floats in [0, 1], still interleaved (HWC). */
    float *hwc = malloc(hw * (size_t)c * sizeof(float));
    if (!hwc) {
        stbi_image_free(pix);
        return mr_error(MR_ENOMEM, "%s: out of memory for a %dx%d image '%s'", fn, h, w, path);
    }
    if (is16) {
        img_convert16(hwc, pix, hw, file_c, c, fmt == IMG_PNM);
    } else {
        const uint8_t *p = pix;
        for (size_t i = 0; i < hw * (size_t)c; i++)
            hwc[i] = (float)p[i] / 255.0f;
    }
    stbi_image_free(pix);

    float *src = hwc;
    if (oh != h || ow != w) {
        float *rs = malloc((size_t)oh * (size_t)ow * (size_t)c * sizeof(float));
        int alpha = (c == 2 || c == 4) ? c - 1 : STBIR_ALPHA_CHANNEL_NONE;
        if (!rs || !stbir_resize_float_generic(hwc, w, h, 0, rs, ow, oh, 0, c, alpha, 0,
                                               STBIR_EDGE_CLAMP, STBIR_FILTER_TRIANGLE,
                                               STBIR_COLORSPACE_LINEAR, NULL)) {
            free(rs);
            free(hwc);
            return mr_error(MR_ENOMEM, "%s: out of memory resizing '%s' from %dx%d to %dx%d", fn,
                            path, h, w, oh, ow);
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
        return mr_error(MR_EINVAL, "%s: size must be 1..%d on each side, got %dx%d (HxW)", fn,
                        MR_IMAGE_MAX_SIDE, height, width);
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
    size_t hw = (size_t)h * (size_t)w;
    uint8_t *px = malloc(hw * (size_t)c);
    if (!px)
        return mr_error(MR_ENOMEM, "%s: out of memory for a %lldx%lld image", fn, (long long)h,
                        (long long)w);
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
