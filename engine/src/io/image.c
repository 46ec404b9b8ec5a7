/*
 * Images in and PNG out, through Sean Barrett's public-domain stb libraries
 * (Debian's libstb-dev headers; their implementations are compiled here, once,
 * hidden by the library's default visibility, so nothing of stb is exported).
 *
 * In: any format stb_image reads (PNG, JPEG, BMP, GIF's first frame, TGA, PSD,
 * PNM, HDR as LDR). 8-bit samples become x / 255 and 16-bit PNG samples
 * x / 65535, in a (1, C, H, W) tensor. Channel conversion is stb_image's
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
    int w = 0, h = 0, file_c = 0;
    int is16 = stbi_is_16_bit_from_file(f);
    void *pix = is16 ? (void *)stbi_load_from_file_16(f, &w, &h, &file_c, channels)
                     : (void *)stbi_load_from_file(f, &w, &h, &file_c, channels);
    fclose(f);
    if (!pix)
        return mr_error(MR_EFORMAT, "%s: '%s' is not a readable image: %s", fn, path,
                        stbi_failure_reason());
    int c = channels ? channels : file_c;
    int oh = height ? height : h, ow = width ? width : w;
    size_t hw = (size_t)w * (size_t)h;

    /* Samples as floats in [0, 1], still interleaved (HWC). */
    float *hwc = malloc(hw * (size_t)c * sizeof(float));
    if (!hwc) {
        stbi_image_free(pix);
        return mr_error(MR_ENOMEM, "%s: out of memory for a %dx%d image '%s'", fn, h, w, path);
    }
    if (is16) {
        const uint16_t *p = pix;
        for (size_t i = 0; i < hw * (size_t)c; i++)
            hwc[i] = (float)p[i] / 65535.0f;
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
    int rc = mr_tensor_new(out, 4, shape);
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
    if (img->device != MR_DEVICE_CPU)
        return mr_error(MR_EINVAL, "%s: the image must be on the CPU", fn);
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
