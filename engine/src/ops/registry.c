/* The op table: name -> definition (the shape half of each op). Adding an op:
 * docs/architecture.md, "How to add an op". */
#include "op.h"

#include <stdio.h>
#include <string.h>


/* Generated from MR_OP_LIST (op.h): one entry per MR_OP_*, in enum order. */
#define MR_OP_ENTRY_(E, n) [MR_OP_##E] = &mr_op_##n,
const mr_op_def *const mr_op_table[MR_OP_COUNT] = {MR_OP_LIST(MR_OP_ENTRY_)};
#undef MR_OP_ENTRY_

static const char *op_names[MR_OP_COUNT + 1];

const char *const *mr_op_names(void)
{
    for (int i = 0; i < MR_OP_COUNT; i++)
        op_names[i] = mr_op_table[i]->name;
    op_names[MR_OP_COUNT] = NULL;
    return op_names;
}

int mr_op_index(const mr_op_def *def)
{
    for (int i = 0; i < MR_OP_COUNT; i++)
        if (mr_op_table[i] == def)
            return i;
    return -1;
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
