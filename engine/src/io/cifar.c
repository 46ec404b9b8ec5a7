/*
 * CIFAR-10 binary batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin).
 *
 * A file is a sequence of 3073-byte records: one label byte (0..9), then a
 * 32x32 colour image as 1024 red, 1024 green, 1024 blue bytes, each plane
 * row-major — already CHW, so a record maps onto one (3, 32, 32) item as is.
 * Pixels become x / 255 (as torchvision's ToTensor). The file size is checked
 * before anything is read (a whole number of records, and the loaded size,
 * 3072 * 4 + 4 = 12292 bytes a record, within the loader budget), and every
 * label as it is read.
 */
#include "../internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10

int mr_cifar_load(mr_tensor **images, int32_t **labels, int64_t *n, const char *path)
{
    static const char fn[] = "mr_cifar_load";
    if (!images || !labels || !n || !path)
        return mr_error(MR_EINVAL, "%s: %s is NULL", fn,
                        !images ? "images" : !labels ? "labels" : !n ? "n" : "path");
    *images = NULL;
    *labels = NULL;
    *n = 0;

    int not_regular;
    FILE *f = mr_fopen_regular(path, &not_regular);
    if (!f)
        return not_regular ? mr_error(MR_EIO, "%s: '%s' is not a regular file", fn, path)
                           : mr_error(MR_EIO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    int rc = MR_OK;
    mr_tensor *x = NULL;
    int32_t *y = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        rc = mr_error(MR_EIO, "%s: cannot stat '%s': %s", fn, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = mr_error(MR_EIO, "%s: '%s' is not a regular file", fn, path);
        goto fail;
    }
    int64_t size = (int64_t)st.st_size;
    if (size == 0) {
        rc = mr_error(MR_EFORMAT, "%s: '%s' is empty (expected CIFAR-10 records of %d bytes)",
                      fn, path, CIFAR_RECORD);
        goto fail;
    }
    if (size % CIFAR_RECORD != 0) {
        rc = mr_error(MR_EFORMAT, "%s: '%s' is not a CIFAR-10 binary batch: its size %lld is not "
                      "a multiple of %d (1 label byte + 3072 pixel bytes per record): %lld "
                      "records and %lld bytes left over", fn, path, (long long)size,
                      CIFAR_RECORD, (long long)(size / CIFAR_RECORD),
                      (long long)(size % CIFAR_RECORD));
        goto fail;
    }
    int64_t count = size / CIFAR_RECORD;
    /* What loading takes: count float32 images of 3072 samples and count int32
     * labels, 12292 bytes a record, against the loader budget. */
    int64_t bytes;
    if ((rc = mr_bytes_of(&bytes, fn, "records", count, CIFAR_PIXELS * (int64_t)sizeof(float) +
                                                        (int64_t)sizeof(int32_t))) < 0 ||
        (rc = mr_loader_check(bytes, "%s: '%s' holds %lld records, %lld bytes loaded (float32 images "
                              "and int32 labels)", fn, path, (long long)count, (long long)bytes)) < 0)
        goto fail;
    int64_t shape[4] = {count, 3, 32, 32};
    if ((rc = mr_tensor_new(&x, 4, shape)) < 0)
        goto fail;
    if (!(y = mr_alloc((size_t)count * sizeof *y))) {
        rc = MR_ENOMEM;
        goto fail;
    }
    uint8_t rec[CIFAR_RECORD];
    for (int64_t i = 0; i < count; i++) {
        size_t got = fread(rec, 1, CIFAR_RECORD, f);
        if (got != CIFAR_RECORD) {
            /* The size was checked, so this is a read error or a file shrinking under us. */
            rc = mr_error(MR_EIO, "%s: '%s': read failed at byte %lld: %s", fn, path,
                          (long long)(i * CIFAR_RECORD + (int64_t)got),
                          ferror(f) ? strerror(errno) : "unexpected end of file");
            goto fail;
        }
        if (rec[0] >= CIFAR_CLASSES) {
            rc = mr_error(MR_EFORMAT, "%s: '%s': record %lld (byte offset %lld) has label %d, "
                          "expected 0..%d", fn, path, (long long)i,
                          (long long)(i * CIFAR_RECORD), rec[0], CIFAR_CLASSES - 1);
            goto fail;
        }
        y[i] = rec[0];
        float *xi = x->data + i * CIFAR_PIXELS;
        for (int j = 0; j < CIFAR_PIXELS; j++)
            xi[j] = (float)rec[1 + j] / 255.0f;
    }
    fclose(f);
    *images = x;
    *labels = y;
    *n = count;
    return MR_OK;
fail:
    fclose(f);
    mr_tensor_free(x);
    mr_free(y);
    return rc;
}
