/* libFuzzer harness: mr_image_load (PNG through libpng, JPEG through
 * libjpeg-turbo, binary PNM through the engine's reader, GIF and BMP refused;
 * the budget and file-size checks, channel conversion and resize). The first byte
 * picks the channels asked for (0 = as in the file, 1..4), the next two a
 * resize (0 = keep, else 1..64 per side); the rest is the file. */
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int channels = data[0] % 5;
    int height = data[1] % 65, width = data[2] % 65;
    if ((height == 0) != (width == 0))
        height = width = 0;
    mr_tensor *img = NULL;
    if (mr_image_load(&img, fuzz_path(data + 3, size - 3), channels, height, width) == MR_OK) {
        /* every value the loader returns is a finite intensity in [0, 1] */
        for (int64_t i = 0; i < img->numel; i++)
            if (!(img->data[i] >= 0.0f && img->data[i] <= 1.0f))
                abort();
        mr_tensor_free(img);
    }
    return 0;
}
