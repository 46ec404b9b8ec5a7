/* The op table: name -> definition. See op.h for how to add an op. */
#include "op.h"

#include <stdio.h>
#include <string.h>


const mr_op_def *const mr_op_table[] = {
    [MR_OP_CONV2D] = &mr_op_conv2d,
    [MR_OP_LINEAR] = &mr_op_linear,
    [MR_OP_BATCHNORM2D] = &mr_op_batchnorm2d,
    [MR_OP_RELU] = &mr_op_relu,
    [MR_OP_SOFTPLUS] = &mr_op_softplus,
    [MR_OP_SILU] = &mr_op_silu,
    [MR_OP_SIGMOID] = &mr_op_sigmoid,
    [MR_OP_TANH] = &mr_op_tanh,
    [MR_OP_MAXPOOL2D] = &mr_op_maxpool2d,
    [MR_OP_AVGPOOL2D] = &mr_op_avgpool2d,
    [MR_OP_ADAPTIVE_AVGPOOL2D] = &mr_op_adaptive_avgpool2d,
    [MR_OP_ADD] = &mr_op_add,
    [MR_OP_MUL] = &mr_op_mul,
    [MR_OP_FLATTEN] = &mr_op_flatten,
    [MR_OP_DROPOUT] = &mr_op_dropout,
    [MR_OP_SOFTMAX] = &mr_op_softmax,
    [MR_OP_LOG_SOFTMAX] = &mr_op_log_softmax,
};
_Static_assert(sizeof mr_op_table / sizeof mr_op_table[0] == MR_OP_COUNT,
               "every op in the MR_OP_* enum needs an entry in mr_op_table");

static const char *op_names[MR_OP_COUNT + 1];

const char *const *mr_op_names(void)
{
    for (int i = 0; i < MR_OP_COUNT; i++)
        op_names[i] = mr_op_table[i]->name;
    op_names[MR_OP_COUNT] = NULL;
    return op_names;
}

const mr_op_def *mr_op_find(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < MR_OP_COUNT; i++)
        if (strcmp(mr_op_table[i]->name, name) == 0)
            return mr_op_table[i];
    return NULL;
}

const char *mr_shape_str(const mr_shape *s, char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < s->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? "x%lld" : "%lld", (long long)s->d[i]);
    return buf;
}
