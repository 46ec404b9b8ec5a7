/*
 * onnx.h — what the ONNX reader's file half (onnx_read.c: the file,
 * protobuf-c, tensors and external data) gives its graph half (onnx.c and
 * the mapping files, onnx_graph.h): the parsed model with its byte budget,
 * and constants.
 */
#ifndef MR_ONNX_H
#define MR_ONNX_H

#include "../internal.h"

#include <onnx/onnx.pb-c.h>

enum { OX_MAX_DIMS = 8 };

/* A constant tensor: an initializer, a Constant node's value or a folded
 * result, as float32 (f) or as int64 (i: shapes, axes, pads), never both. */
typedef struct ox_const {
    int ndim;
    int64_t dims[OX_MAX_DIMS];
    int64_t numel;
    float *f;
    int64_t *i;
    const char *name; /* the ONNX value name (borrowed from the model) */
    int param;        /* the engine parameter holding f unchanged; -1: none yet */
    /* int64 shapes taken from computed values count the batch axis N, known
     * only when the network runs: entry k is nsym[k]·N when nsym[k] > 0 (i[k]
     * is then 0). NULL: every entry is the number in i. */
    int64_t *nsym;
} ox_const;

/* The model being read: the file, its protobuf and the byte budget. */
typedef struct ox_model {
    const char *path;
    char *dir;               /* the model's folder, for external data */
    Onnx__ModelProto *proto;
    int64_t budget;          /* the most bytes (mr_onnx_options.max_bytes; 0 asks ox_model_open for the default) */
    int64_t used;            /* bytes taken so far: file, protobuf, tensors */
    int64_t parse_bytes;     /* bytes the protobuf parser holds now */
    int64_t opset;           /* of the default domain */
} ox_model;

/* Reads and parses path (its size checked against the budget before it is
 * read; the parser's allocations counted against it). */
int ox_model_open(ox_model *m, const char *path, int64_t budget);
void ox_model_close(ox_model *m);

/* Adds bytes to m->used, MR_ENOMEM naming what when over the budget. */
int ox_charge(ox_model *m, int64_t bytes, const char *what);

/* A new constant from a TensorProto (dims and data checked against each
 * other, external data read from m->dir). as_int: int64 wanted (INT64 and
 * INT32 tensors), else float32 (FLOAT, DOUBLE, FLOAT16, and integers
 * converted). Frees with ox_const_free. */
int ox_const_from_tensor(ox_const **out, ox_model *m, const Onnx__TensorProto *t, int as_int);
/* A new empty constant of the given dims (float or int), zeroed. */
int ox_const_new(ox_const **out, ox_model *m, int ndim, const int64_t *dims, int is_int,
                 const char *name);
void ox_const_free(ox_const *c);

/* "3x64x7x7" into buf. */
const char *ox_dims_str(int ndim, const int64_t *dims, char *buf, size_t len);

#endif
