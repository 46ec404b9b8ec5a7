/*
 * backend.c — the registry of backends (moreau.h, "backends"). "cpu" is
 * always there; others register themselves by name. The registry is also
 * where the op tables are checked, once, before any backend is handed out.
 */
#include "backend.h"
#include "cpu/cpu.h"

#include <stdio.h>
#include <string.h>

enum { MR_MAX_BACKENDS = 16 };

static const mr_backend *registry[MR_MAX_BACKENDS] = {&mr_cpu_backend};
static int nregistered = 1;

const mr_backend *mr_backend_cpu(void) { return &mr_cpu_backend; }

/* The shape table and the CPU kernel table have a complete row for every
 * MR_OP_* (MR_OP_LIST makes a missing row a link error; this catches a row
 * whose functions were left out). MR_OK, or MR_ESTATE naming the op. */
int mr_op_tables_check(void)
{
    static int checked; /* 1: passed */
    if (checked)
        return MR_OK;
    for (int i = 0; i < MR_OP_COUNT; i++) {
        const mr_op_def *d = mr_op_table[i];
        if (!d || !d->name || !d->infer || d->ninputs < 1 || d->ninputs > 2)
            return mr_error(MR_ESTATE, "op table: entry %d (of %d) is incomplete", i, MR_OP_COUNT);
    }
    MR_TRY(mr_cpu_kernels_check());
    checked = 1;
    return MR_OK;
}

static const char *code_name(int rc)
{
    static const char *const names[] = {"MR_OK",     "MR_EINVAL",    "MR_ESHAPE", "MR_ENOMEM",
                                        "MR_EIO",    "MR_EFORMAT",   "MR_ENOTFOUND", "MR_ESTATE"};
    return rc <= 0 && rc >= MR_ESTATE ? names[-rc] : "an unknown code";
}

int mr_backend_status(const mr_backend *b, const char *entry, int rc, unsigned long serial)
{
    if (rc >= 0 || mr_error_serial() != serial)
        return rc;
    if (rc >= MR_ESTATE)
        return mr_error(rc, "backend '%s': %s failed (%s)", b->name, entry, code_name(rc));
    return mr_error(rc, "backend '%s': %s failed (%s %d)", b->name, entry, code_name(rc), rc);
}

int mr_backend_run_status(const mr_backend *b, int op, int pass, int rc, unsigned long serial)
{
    static const char *const passes[MR_PASS_COUNT] = {"forward", "vjp", "jvp", "vjp_tangent"};
    char entry[64];
    snprintf(entry, sizeof entry, "%s of %s", pass >= 0 && pass < MR_PASS_COUNT ? passes[pass] : "a pass",
             op >= 0 && op < MR_OP_COUNT ? mr_op_names()[op] : "an op");
    return mr_backend_status(b, entry, rc, serial);
}

const mr_backend *mr_backend_get(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < nregistered; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

int mr_backend_register(const mr_backend *b)
{
    if (!b || !b->name || !*b->name)
        return mr_error(MR_EINVAL, "backend_register: the backend or its name is NULL");
    if (!b->alloc || !b->free || !b->copy || !b->zero || !b->add || !b->fill_normal || !b->supports ||
        !b->run)
        return mr_error(MR_EINVAL, "backend_register: '%s' leaves an entry NULL", b->name);
    if (mr_backend_get(b->name))
        return mr_error(MR_EINVAL, "backend_register: a backend named '%s' is already registered",
                        b->name);
    if (nregistered == MR_MAX_BACKENDS)
        return mr_error(MR_ENOMEM, "backend_register: no room for '%s' (%d backends at most)", b->name,
                        MR_MAX_BACKENDS);
    registry[nregistered++] = b;
    return MR_OK;
}
