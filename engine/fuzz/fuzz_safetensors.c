/* libFuzzer harness: mr_safetensors_load, then every tensor's name, shape and
 * data (mr_safetensors_get) and the metadata. */
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mr_safetensors *st = NULL;
    if (mr_safetensors_load(&st, fuzz_path(data, size)) != MR_OK)
        return 0;
    (void)mr_safetensors_metadata(st);
    int count = mr_safetensors_count(st);
    for (int i = 0; i < count; i++) {
        int ndim = 0;
        int64_t shape[8];
        (void)mr_safetensors_name(st, i);
        (void)mr_safetensors_shape(st, i, &ndim, shape);
        mr_tensor *t = NULL;
        if (mr_safetensors_get(&t, st, i) == MR_OK)
            mr_tensor_free(t);
    }
    mr_safetensors_free(st);
    return 0;
}
