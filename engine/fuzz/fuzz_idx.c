/* libFuzzer harness: mr_idx_load_images and mr_idx_load_labels on the same
 * bytes (plain or gzip IDX, through zlib). */
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(data, size);
    mr_tensor *img = NULL;
    if (mr_idx_load_images(&img, path) == MR_OK) {
        for (int64_t i = 0; i < img->numel; i++)
            if (!(img->data[i] >= 0.0f && img->data[i] <= 1.0f))
                abort();
        mr_tensor_free(img);
    }
    int32_t *labels = NULL;
    int64_t n = 0;
    if (mr_idx_load_labels(&labels, &n, path) == MR_OK) {
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > 255)
                abort();
        mr_labels_free(labels);
    }
    return 0;
}
