/* libFuzzer harness: mr_net_from_onnx (protobuf-c parsing under the budget,
 * tensors and their dims, the graph checks, the op mapping), then, for a
 * network that loads and is small, a forward pass on zeros: a network the
 * reader accepts must run. */
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mr_net *net = NULL;
    if (mr_net_from_onnx(&net, fuzz_path(data, size), NULL) != MR_OK)
        return 0;
    int ndim = 0;
    int64_t shape[8] = {1};
    int64_t bytes = 0;
    if (mr_net_node_count(net) < 64 && mr_net_node_shape(net, 0, &ndim, shape + 1) == MR_OK &&
        mr_net_workspace_estimate(&bytes, net, 1, 0) == MR_OK && bytes < (16 << 20)) {
        mr_tensor *x = NULL;
        if (mr_tensor_new(&x, ndim + 1, shape) == MR_OK) {
            if (mr_net_forward(net, x, NULL) != MR_OK)
                abort(); /* a loaded network's forward cannot fail on a valid batch */
            mr_tensor_free(x);
        }
    }
    mr_net_free(net);
    return 0;
}
