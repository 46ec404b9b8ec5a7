/* libFuzzer harness: mr_cifar_load (CIFAR-10 binary batches). */
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mr_tensor *img = NULL;
    int32_t *labels = NULL;
    int64_t n = 0;
    if (mr_cifar_load(&img, &labels, &n, fuzz_path(data, size)) == MR_OK) {
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > 9)
                abort();
        mr_tensor_free(img);
        mr_labels_free(labels);
    }
    return 0;
}
