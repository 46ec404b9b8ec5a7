/* Loads an ONNX classifier and prints |d score / d x| of one class at x = 0.5:
 *   onnx_gradient MODEL.onnx [CLASS]        (cc onnx_gradient.c $(pkg-config --libs --cflags moreau) -lm) */
#include <moreau.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    mr_net *net = NULL;
    mr_tensor *x = NULL, *g = NULL;
    int32_t label = argc > 2 ? atoi(argv[2]) : 0;
    int64_t shape[4] = {1}; /* one item, then the graph's sample shape */
    int ndim;
    float score, norm = 0;
    if (argc < 2 || mr_net_from_onnx(&net, argv[1], NULL) || mr_net_node_shape(net, 0, &ndim, shape + 1) ||
        mr_tensor_new(&x, ndim + 1, shape) || mr_tensor_new(&g, ndim + 1, shape) || mr_tensor_fill_(x, 0.5) ||
        mr_oracle_grad(net, x, &label, MR_SCORE_LOGIT, &score, g))
        return fprintf(stderr, "onnx_gradient: %s\n", argc < 2 ? "usage: onnx_gradient MODEL.onnx [CLASS]" : mr_last_error()), 1;
    for (int64_t i = 0; i < mr_tensor_numel(g); i++)
        norm += mr_tensor_data(g)[i] * mr_tensor_data(g)[i];
    printf("class %d: score %.6g, |gradient| %.6g\n", (int)label, score, sqrtf(norm));
    return mr_net_free(net), mr_tensor_free(x), mr_tensor_free(g), 0;
}
