/*
 * IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.
 *
 * Layout (all integers big-endian):
 *   bytes 0-1   0x00 0x00
 *   byte  2     data type: 0x08 = unsigned byte (the only one accepted here)
 *   byte  3     number of dimensions d (3 for images: N, rows, cols; 1 for labels: N)
 *   then        d uint32 sizes, then prod(sizes) data bytes.
 * So the magic reads 0x00000803 for images and 0x00000801 for labels.
 *
 * The files are read through zlib's gzread, which passes a file that is not
 * gzip through unchanged, so `x.gz` and `x` both work. The header is checked
 * first, and its declared size against the loader budget and the file's size
 * (idx_check_size: a gzip file can expand at most 1032:1), so a small gzip
 * bomb is refused before any decompression; the data is then read into a buffer that grows only as bytes actually
 * arrive, so a header that claims more than the file holds costs no more memory
 * than the file itself, and fails with the expected and found byte counts.
 * Pixels become x / 255 (as torchvision's ToTensor), in a (N, 1, rows, cols) tensor.
 */
#include "../internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <unistd.h>

#define IDX_UBYTE 0x08
/* Sanity limits on what a header may claim: far above any real data set, far
 * below where byte counts could overflow. */
#define IDX_MAX_ITEM_BYTES ((int64_t)1 << 28)
#define IDX_MAX_TOTAL_BYTES ((int64_t)1 << 34)

static int idx_open(gzFile *gz, const char *fn, const char *path)
{
    if (!path)
        return mr_error(MR_EINVAL, "%s: path is NULL", fn);
    int fd = mr_open_regular(path);
    if (fd == MR_NOT_REGULAR)
        return mr_error(MR_EIO, "%s: '%s' is not a regular file", fn, path);
    if (fd < 0)
        return mr_error(MR_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    errno = 0;
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        int e = errno;
        close(fd);
        return mr_error(MR_EIO, "%s: cannot open '%s': %s", fn, path, e ? strerror(e) : "out of memory");
    }
    return MR_OK;
}

/* Refuses a declared size before anything is allocated: the result (out_bytes:
 * float32 pixels or int32 labels) must fit the loader budget, and a gzip file
 * must be able to hold `expected` data bytes at deflate's most, 1032:1, so
 * decompression never runs past what the header and the file allow. (A plain
 * file needs no such check: idx_data grows its buffer only as bytes arrive,
 * and reports a short file with the counts.) */
static int idx_check_size(gzFile gz, const char *fn, const char *path, int64_t expected,
                          int64_t out_bytes, const char *what)
{
    MR_TRY(mr_loader_check(out_bytes, "%s: '%s' declares %s, %lld bytes loaded", fn, path, what,
                           (long long)out_bytes));
    struct stat st;
    if (gzdirect(gz) || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return MR_OK; /* plain, or not a regular file: the read below reports it */
    int64_t file_bytes = (int64_t)st.st_size, most = 0;
    if (mr_size_mul(file_bytes, 1032, &most))
        most = INT64_MAX;
    if (expected > most)
        return mr_error(MR_EFORMAT, "%s: '%s' declares %s, %lld bytes of data, more than its "
                        "%lld gzip bytes can hold (deflate expands at most 1032:1)", fn, path,
                        what, (long long)expected, (long long)file_bytes);
    return MR_OK;
}

/* Reads up to n bytes into buf; *got receives how many arrived. Fails only on
 * an I/O error or a corrupt / cut-off gzip stream. */
static int idx_read(gzFile gz, const char *fn, const char *path, uint8_t *buf, size_t n,
                    size_t *got, size_t offset)
{
    size_t done = 0;
    while (done < n) {
        size_t want = n - done;
        unsigned chunk = (unsigned)(want < ((size_t)1 << 30) ? want : ((size_t)1 << 30));
        int r = gzread(gz, buf + done, chunk);
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    int zerr = Z_OK;
    const char *msg = gzerror(gz, &zerr);
    if (zerr == Z_ERRNO)
        return mr_error(MR_EIO, "%s: '%s': read failed after byte %zu: %s", fn, path,
                        offset + done, strerror(errno));
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        /* zlib decompresses ahead of what was asked, so no exact offset here;
         * its message starts with the name it was opened by ("<fd:N>",
         * gzdopen), which ours replaces by the path. */
        const char *sep = strncmp(msg, "<fd:", 4) == 0 ? strstr(msg, ">: ") : NULL;
        if (sep)
            msg = sep + 3;
        return mr_error(MR_EFORMAT, "%s: '%s': the gzip stream is corrupt or cut off (zlib: %s)",
                        fn, path, msg);
    }
    *got = done;
    return MR_OK;
}

/* Reads and checks the header: magic 0x0000 08 <ndims>, then the sizes. */
static int idx_header(gzFile gz, const char *fn, const char *path, int want_ndims,
                      const char *kind, uint32_t *dims)
{
    uint8_t h[4 + 4 * 3];
    size_t got = 0;
    MR_TRY(idx_read(gz, fn, path, h, 4, &got, 0));
    if (got == 0)
        return mr_error(MR_EFORMAT, "%s: '%s' is empty (expected an IDX %s file)", fn, path,
                        kind);
    if (got < 4)
        return mr_error(MR_EFORMAT, "%s: '%s' is truncated: %zu bytes, shorter than the 4-byte "
                        "IDX magic", fn, path, got);
    uint32_t magic = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint32_t want_magic = (uint32_t)IDX_UBYTE << 8 | (uint32_t)want_ndims;
    if (h[0] != 0 || h[1] != 0)
        return mr_error(MR_EFORMAT, "%s: '%s' is not an IDX file: magic 0x%08x, expected "
                        "0x%08x (IDX %s)", fn, path, (unsigned)magic, (unsigned)want_magic, kind);
    if (h[2] != IDX_UBYTE)
        return mr_error(MR_EFORMAT, "%s: '%s': IDX data type 0x%02x is not supported (only "
                        "unsigned bytes, 0x08; magic 0x%08x)", fn, path, h[2], (unsigned)magic);
    if (h[3] != want_ndims) {
        const char *hint = h[3] == 1 ? " (a label file?)" : h[3] == 3 ? " (an image file?)" : "";
        return mr_error(MR_EFORMAT, "%s: '%s' has %d dimension%s%s, expected %d for IDX %s "
                        "(magic 0x%08x, expected 0x%08x)", fn, path, h[3], h[3] == 1 ? "" : "s",
                        hint, want_ndims, kind, (unsigned)magic, (unsigned)want_magic);
    }
    size_t need = 4 * (size_t)want_ndims;
    MR_TRY(idx_read(gz, fn, path, h + 4, need, &got, 4));
    if (got < need)
        return mr_error(MR_EFORMAT, "%s: '%s' is truncated in its header: expected %zu bytes, "
                        "found %zu", fn, path, 4 + need, 4 + got);
    for (int i = 0; i < want_ndims; i++) {
        const uint8_t *p = h + 4 + 4 * i;
        dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (dims[i] == 0)
            return mr_error(MR_EFORMAT, "%s: '%s': dimension %d of the header is 0 (an empty "
                            "data set)", fn, path, i);
    }
    return MR_OK;
}

/* Reads exactly `expected` data bytes after a header of header_bytes into a
 * new malloc'd buffer, growing it as data arrives. Fails naming the expected
 * and found counts if the file is shorter, and if it holds extra bytes. */
static int idx_data(uint8_t **out, gzFile gz, const char *fn, const char *path,
                    int64_t expected, size_t header_bytes, const char *what)
{
    *out = NULL;
    size_t cap = (size_t)MR_MIN(expected, (int64_t)1 << 24);
    size_t have = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return mr_error(MR_ENOMEM, "%s: out of memory reading '%s'", fn, path);
    for (;;) {
        size_t got = 0;
        int rc = idx_read(gz, fn, path, buf + have, cap - have, &got, header_bytes + have);
        if (rc < 0) {
            free(buf);
            return rc;
        }
        have += got;
        if (have < cap || cap == (size_t)expected)
            break;
        size_t ncap = (size_t)MR_MIN((int64_t)cap * 2, expected);
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            free(buf);
            return mr_error(MR_ENOMEM, "%s: out of memory reading '%s' (%zu bytes)", fn, path,
                            ncap);
        }
        buf = nb;
        cap = ncap;
    }
    if ((int64_t)have < expected) {
        free(buf);
        return mr_error(MR_EFORMAT, "%s: '%s' is truncated: the header promises %s, %lld bytes "
                        "of data after the %zu-byte header, found %zu", fn, path, what,
                        (long long)expected, header_bytes, have);
    }
    uint8_t extra[4096];
    size_t more = 0, got = 0;
    do {
        int rc = idx_read(gz, fn, path, extra, sizeof extra, &got, header_bytes + have + more);
        if (rc < 0) {
            free(buf);
            return rc;
        }
        more += got;
    } while (got == sizeof extra && more < ((size_t)1 << 20));
    if (more > 0) {
        free(buf);
        return mr_error(MR_EFORMAT, "%s: '%s' holds more data than its header says: %s, %lld "
                        "bytes after the %zu-byte header, found %s%zu more", fn, path, what,
                        (long long)expected, header_bytes, got == sizeof extra ? "at least " : "",
                        more);
    }
    *out = buf;
    return MR_OK;
}

int mr_idx_load_images(mr_tensor **out, const char *path)
{
    static const char fn[] = "mr_idx_load_images";
    if (!out)
        return mr_error(MR_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    gzFile gz;
    MR_TRY(idx_open(&gz, fn, path));
    uint32_t dims[3];
    uint8_t *bytes = NULL;
    int rc = idx_header(gz, fn, path, 3, "images", dims);
    if (rc < 0)
        goto done;
    int64_t item = 0;
    if (mr_size_mul(dims[1], dims[2], &item) || item > IDX_MAX_ITEM_BYTES ||
        (int64_t)dims[0] > IDX_MAX_TOTAL_BYTES / item) {
        rc = mr_error(MR_EFORMAT, "%s: '%s': absurd size in the header: %u images of %ux%u "
                      "(limits: %lld pixels per image, %lld bytes in all)", fn, path, dims[0],
                      dims[1], dims[2], (long long)IDX_MAX_ITEM_BYTES,
                      (long long)IDX_MAX_TOTAL_BYTES);
        goto done;
    }
    int64_t expected = item * dims[0];
    char what[96];
    snprintf(what, sizeof what, "%u images of %ux%u", dims[0], dims[1], dims[2]);
    rc = idx_check_size(gz, fn, path, expected, expected * (int64_t)sizeof(float), what);
    if (rc < 0)
        goto done;
    rc = idx_data(&bytes, gz, fn, path, expected, 16, what);
    if (rc < 0)
        goto done;
    int64_t shape[4] = {dims[0], 1, dims[1], dims[2]};
    rc = mr_tensor_new(out, 4, shape);
    if (rc < 0)
        goto done;
    float *x = (*out)->data;
    for (int64_t i = 0; i < expected; i++)
        x[i] = (float)bytes[i] / 255.0f; /* a division, as ToTensor, so values match bit for bit */
done:
    free(bytes);
    gzclose(gz);
    return rc;
}

int mr_idx_load_labels(int32_t **out, int64_t *n, const char *path)
{
    static const char fn[] = "mr_idx_load_labels";
    if (!out || !n)
        return mr_error(MR_EINVAL, "%s: %s is NULL", fn, !out ? "out" : "n");
    *out = NULL;
    *n = 0;
    gzFile gz;
    MR_TRY(idx_open(&gz, fn, path));
    uint32_t dims[1];
    uint8_t *bytes = NULL;
    int rc = idx_header(gz, fn, path, 1, "labels", dims);
    if (rc < 0)
        goto done;
    /* A uint32 count of one-byte labels is at most 4 GiB: below IDX_MAX_TOTAL_BYTES,
     * and read only as far as the file goes. */
    char what[64];
    snprintf(what, sizeof what, "%u labels", dims[0]);
    rc = idx_check_size(gz, fn, path, dims[0], (int64_t)dims[0] * (int64_t)sizeof(int32_t), what);
    if (rc < 0)
        goto done;
    rc = idx_data(&bytes, gz, fn, path, dims[0], 8, what);
    if (rc < 0)
        goto done;
    int32_t *labels = mr_alloc((size_t)dims[0] * sizeof *labels);
    if (!labels) {
        rc = MR_ENOMEM;
        goto done;
    }
    for (uint32_t i = 0; i < dims[0]; i++)
        labels[i] = bytes[i];
    *out = labels;
    *n = dims[0];
done:
    free(bytes);
    gzclose(gz);
    return rc;
}

void mr_labels_free(int32_t *labels) { mr_free(labels); }
