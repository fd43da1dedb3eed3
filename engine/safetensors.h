/* safetensors.h — reading, validating and writing Hugging Face safetensors checkpoints.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON (an object: tensor name -> {"dtype", "shape",
 * "data_offsets": [begin, end]} plus an optional "__metadata__" string -> string map), then the data section;
 * offsets are relative to the start of the data section. Files are mmapped read-only and every header field is
 * validated before any tensor is handed out (bounds, dtype × shape = byte length, overlaps, duplicates), so a
 * corrupt or hostile file yields a one-line error naming the file and tensor, never a crash.
 *
 * A st_set is one checkpoint: a single file, or the shards named by model.safetensors.index.json. Tensor views stay
 * valid until st_close(). Data pointers point into the mapping and are only as aligned as the file makes them (our
 * writer aligns every tensor to its element size; foreign files need not), so read through memcpy or check. */
#ifndef OMNI_SAFETENSORS_H
#define OMNI_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_F8_E4M3, ST_F8_E5M2,
    ST_U16, ST_U32, ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100000000) /* bytes; the reference library's limit (MAX_HEADER_SIZE) */

typedef struct {
    const char *name;
    st_dtype dtype;
    int n_dims;                   /* 0 = scalar */
    int64_t shape[ST_MAX_DIMS];   /* outermost first, as in the file; unused entries 0 */
    const void *data;             /* nbytes bytes inside the file's mapping (see alignment note above) */
    size_t nbytes;                /* = st_dtype_size(dtype) × product(shape) */
    const char *file;             /* shard path, for error messages */
} st_tensor;

typedef struct st_set st_set; /* one checkpoint: one file or many shards */

/* One .safetensors file. On failure *out is NULL and e names the file (and tensor/field). */
int st_open_file(const char *path, st_set **out, omni_err *e);
/* A checkpoint folder: model.safetensors.index.json and its shards if the index exists, else model.safetensors;
 * error if neither. Every tensor of the index's weight_map must be in the shard it names. */
int st_open_dir(const char *dir, st_set **out, omni_err *e);
/* Parses and validates a file given all of its bytes (not copied: they must outlive the set). path is used for
 * messages and st_tensor.file only. Used by st_open_file and the fuzzer. */
int st_parse(const uint8_t *bytes, size_t size, const char *path, st_set **out, omni_err *e);
void st_close(st_set *s); /* NULL ok */

const st_tensor *st_find(const st_set *s, const char *name); /* hash lookup; NULL if absent */
int st_count(const st_set *s);
const st_tensor *st_get(const st_set *s, int i); /* file order of the header, shards one after another */
const char *st_metadata(const st_set *s, const char *key); /* __metadata__ of the first file (shard); NULL if absent */

const char *st_dtype_name(st_dtype t);   /* the file spelling: "BF16", "F8_E4M3", ...; "?" if out of range */
size_t st_dtype_size(st_dtype t);        /* bytes per element; 0 if out of range */
int st_dtype_parse(const char *name, st_dtype *out); /* 0 ok, OMNI_E_UNSUPPORTED if unknown */

/* ---- writer ----------------------------------------------------------------------------------------------------
 * Collects tensors, then writes a file the reference library accepts: header padded with spaces to a multiple of 8,
 * data contiguous with no gaps, larger element sizes first so that every tensor is aligned to its element size.
 * The file appears atomically (temporary file in the same folder, fsync, rename). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void); /* NULL on out of memory */
/* Copies data. Returns OMNI_E_ARG for a NULL/duplicate name, bad dtype or dims, or nbytes != size × product(shape);
 * OMNI_E_NOMEM if the copy fails. */
int st_writer_add(st_writer *w, const char *name, st_dtype t, int n_dims, const int64_t *shape, const void *data,
                  size_t nbytes);
/* Same, without the copy: data must stay valid until st_writer_save() returns (for large checkpoints). */
int st_writer_add_ref(st_writer *w, const char *name, st_dtype t, int n_dims, const int64_t *shape, const void *data,
                      size_t nbytes);
int st_writer_set_metadata(st_writer *w, const char *key, const char *value); /* replaces an existing key */
int st_writer_save(st_writer *w, const char *path, omni_err *e);
void st_writer_free(st_writer *w); /* NULL ok */

#endif
