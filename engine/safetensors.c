/* safetensors.c — mmap, validate and index safetensors files (single or sharded), and write them atomically.
 *
 * The checks mirror the reference library's Metadata::validate (safetensors/src/tensor.rs): header length bounded,
 * header a JSON object, known dtypes, shape × dtype size = data_offsets span, offsets inside the data section. We
 * are stricter in one way (no two tensors may share bytes) and looser in another (gaps between tensors and unused
 * bytes at the end are allowed; the reference insists on a contiguous cover, which our writer always produces). */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ------------------------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = { "F64", 8 },   [ST_F32] = { "F32", 4 },         [ST_F16] = { "F16", 2 },
    [ST_BF16] = { "BF16", 2 }, [ST_I64] = { "I64", 8 },         [ST_I32] = { "I32", 4 },
    [ST_I16] = { "I16", 2 },   [ST_I8] = { "I8", 1 },           [ST_U8] = { "U8", 1 },
    [ST_BOOL] = { "BOOL", 1 }, [ST_F8_E4M3] = { "F8_E4M3", 1 }, [ST_F8_E5M2] = { "F8_E5M2", 1 },
    [ST_U16] = { "U16", 2 },   [ST_U32] = { "U32", 4 },         [ST_U64] = { "U64", 8 },
};

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].size : 0; }

int st_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(name, st_dtypes[i].name)) {
            *out = (st_dtype)i;
            return 0;
        }
    return OMNI_E_UNSUPPORTED;
}

/* Element count × element size with overflow checks; 0 ok, -1 on overflow or a bad dim. */
static int st_byte_size(st_dtype t, int n_dims, const int64_t *shape, uint64_t *out) {
    uint64_t n = st_dtype_size(t);
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    }
    *out = n;
    return 0;
}

/* ---- name index: open addressing over indices into a caller's array -------------------------------------------- */

typedef const char *(*st_name_at_fn)(const void *arr, int i);

typedef struct {
    int32_t *slot; /* cap entries, -1 = empty */
    uint32_t cap;  /* power of two */
    int n;
} st_index;

static uint32_t st_hash(const char *s) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int32_t st_index_find(const st_index *ix, const char *name, st_name_at_fn at, const void *arr) {
    if (!ix->cap) return -1;
    for (uint32_t h = st_hash(name) & (ix->cap - 1);; h = (h + 1) & (ix->cap - 1)) {
        int32_t k = ix->slot[h];
        if (k < 0) return -1;
        if (!strcmp(at(arr, k), name)) return k;
    }
}

static void st_index_put(st_index *ix, int32_t k, const char *name) { /* name known absent, room known */
    uint32_t h = st_hash(name) & (ix->cap - 1);
    while (ix->slot[h] >= 0) h = (h + 1) & (ix->cap - 1);
    ix->slot[h] = k;
    ix->n++;
}

/* Adds entry k (whose name is at(arr, k)); returns the index of an existing entry with that name, -1 if added,
 * or -2 on out of memory. Keeps the load factor at or below 1/2. */
static int32_t st_index_add(st_index *ix, int32_t k, st_name_at_fn at, const void *arr) {
    const char *name = at(arr, k);
    int32_t old = st_index_find(ix, name, at, arr);
    if (old >= 0) return old;
    if ((uint32_t)(ix->n + 1) * 2 > ix->cap) {
        uint32_t cap = ix->cap ? ix->cap * 2 : 64;
        int32_t *slot = malloc(sizeof *slot * cap), *prev = ix->slot;
        if (!slot) return -2;
        memset(slot, 0xff, sizeof *slot * cap);
        uint32_t pcap = ix->cap;
        ix->slot = slot;
        ix->cap = cap;
        ix->n = 0;
        for (uint32_t i = 0; i < pcap; i++)
            if (prev[i] >= 0) st_index_put(ix, prev[i], at(arr, prev[i]));
        free(prev);
    }
    st_index_put(ix, k, name);
    return -1;
}

/* ---- the set ----------------------------------------------------------------------------------------------------- */

typedef struct {
    char *path;      /* owned; st_tensor.file points here */
    void *map;       /* mmap'd file, NULL when the bytes are borrowed (st_parse) */
    size_t map_size;
} st_file;

struct st_set {
    st_tensor *t; /* n tensors, names owned */
    int n, cap;
    st_index ix;
    st_file *files;
    int n_files;
    char **meta; /* n_meta key/value pairs: meta[2i], meta[2i+1] */
    int n_meta;
};

static const char *st_set_name_at(const void *arr, int i) { return ((const st_tensor *)arr)[i].name; }

static st_set *st_set_new(void) { return calloc(1, sizeof(st_set)); }

void st_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free((char *)s->t[i].name);
    free(s->t);
    free(s->ix.slot);
    for (int i = 0; i < s->n_files; i++) {
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].map_size);
        free(s->files[i].path);
    }
    free(s->files);
    for (int i = 0; i < 2 * s->n_meta; i++) free(s->meta[i]);
    free(s->meta);
    free(s);
}

const st_tensor *st_find(const st_set *s, const char *name) {
    if (!s || !name) return NULL;
    int32_t k = st_index_find(&s->ix, name, st_set_name_at, s->t);
    return k >= 0 ? &s->t[k] : NULL;
}

int st_count(const st_set *s) { return s ? s->n : 0; }
const st_tensor *st_get(const st_set *s, int i) { return s && i >= 0 && i < s->n ? &s->t[i] : NULL; }

const char *st_metadata(const st_set *s, const char *key) {
    if (!s || !key) return NULL;
    for (int i = 0; i < s->n_meta; i++)
        if (!strcmp(s->meta[2 * i], key)) return s->meta[2 * i + 1];
    return NULL;
}

/* Registers a file; takes ownership of map (unmapped by st_close even if this fails). Returns the stored path. */
static const char *st_set_add_file(st_set *s, const char *path, void *map, size_t map_size) {
    st_file *f = realloc(s->files, sizeof *f * (size_t)(s->n_files + 1));
    char *p = strdup(path);
    if (!f || !p) {
        if (f) s->files = f;
        free(p);
        if (map) munmap(map, map_size);
        return NULL;
    }
    s->files = f;
    s->files[s->n_files++] = (st_file){ p, map, map_size };
    return p;
}

/* ---- header parsing ---------------------------------------------------------------------------------------------- */

/* A JSON number that is a whole number in [0, 2^53] (beyond that doubles skip integers and no real file is that
 * large). */
static int st_json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0)) return 0; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

typedef struct {
    uint64_t begin, end;
    int32_t k; /* tensor index */
} st_span;

static int st_span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int st_parse_metadata(st_set *s, const cJSON *m, const char *path, int keep, omni_err *e) {
    if (!cJSON_IsObject(m)) return omni_fail(e, OMNI_E_FORMAT, "%s: __metadata__ is not a JSON object", path);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv) || !kv->valuestring)
            return omni_fail(e, OMNI_E_FORMAT, "%s: __metadata__ value of '%s' is not a string", path, kv->string);
    }
    if (!keep) return 0;
    int n = cJSON_GetArraySize(m);
    s->meta = calloc((size_t)n * 2 + 1, sizeof *s->meta);
    if (!s->meta) return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        char *k = strdup(kv->string), *v = strdup(kv->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
        }
        s->meta[2 * s->n_meta] = k;
        s->meta[2 * s->n_meta + 1] = v;
        s->n_meta++;
    }
    return 0;
}

/* Validates one tensor entry of the header and fills t (name not set). data/dsize: the file's data section. */
static int st_parse_entry(const cJSON *ent, const char *path, const uint8_t *data, uint64_t dsize, st_tensor *t,
                          omni_err *e) {
    const char *nm = ent->string;
    if (!cJSON_IsObject(ent))
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(ent, "dtype");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': dtype missing or not a string", path, nm);
    if (st_dtype_parse(dt->valuestring, &t->dtype))
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", path, nm, dt->valuestring);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(ent, "shape");
    if (!cJSON_IsArray(sh))
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': shape missing or not a list", path, nm);
    int nd = 0;
    for (const cJSON *d = sh->child; d; d = d->next, nd++) {
        uint64_t v;
        if (nd >= ST_MAX_DIMS)
            return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': shape has more than %d dims", path, nm, ST_MAX_DIMS);
        if (!st_json_u64(d, &v))
            return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, nm,
                             nd);
        t->shape[nd] = (int64_t)v;
    }
    t->n_dims = nd;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(ent, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !st_json_u64(off->child, &b) ||
        !st_json_u64(off->child->next, &en))
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                         path, nm);
    if (b > en)
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", path, nm,
                         (unsigned long long)b, (unsigned long long)en);
    if (en > dsize) /* most often a file cut short (interrupted download), hence an I/O error */
        return omni_fail(e, OMNI_E_IO,
                         "%s: tensor '%s': data_offsets end %llu is past the data section (%llu bytes; truncated?)",
                         path, nm, (unsigned long long)en, (unsigned long long)dsize);
    uint64_t want;
    if (st_byte_size(t->dtype, nd, t->shape, &want))
        return omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s': shape overflows", path, nm);
    if (want != en - b)
        return omni_fail(e, OMNI_E_FORMAT,
                         "%s: tensor '%s': dtype %s x shape needs %llu bytes but data_offsets span %llu", path, nm,
                         st_dtype_name(t->dtype), (unsigned long long)want, (unsigned long long)(en - b));
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    return 0;
}

/* Parses one file's bytes into s (appending its tensors). fpath: the stored path of an already registered file.
 * keep_meta: store this file's __metadata__ (the first file of a set). */
static int st_add_bytes(st_set *s, const uint8_t *bytes, size_t size, const char *fpath, int keep_meta, omni_err *e) {
    if (size < 8)
        return omni_fail(e, OMNI_E_IO, "%s: file is %zu bytes, shorter than the 8-byte header length", fpath, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    if (hlen > ST_MAX_HEADER)
        return omni_fail(e, OMNI_E_FORMAT, "%s: header length %llu is absurd (limit %llu)", fpath,
                         (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > size - 8)
        return omni_fail(e, OMNI_E_IO, "%s: header length %llu runs past the end of the file (%zu bytes)", fpath,
                         (unsigned long long)hlen, size);
    if (hlen == 0) return omni_fail(e, OMNI_E_FORMAT, "%s: header is empty", fpath);

    /* cJSON gets its own NUL-terminated copy: it then never reads past the header, and an embedded NUL ends the
     * parse early, which the trailing-bytes check below rejects. */
    char *txt = malloc((size_t)hlen + 1);
    if (!txt)
        return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory for a %llu-byte header", fpath, (unsigned long long)hlen);
    memcpy(txt, bytes + 8, (size_t)hlen);
    txt[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    int rc = 0;
    st_span *spans = NULL;
    if (!root) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: header is not valid JSON (error near byte %td)", fpath,
                       end ? end - txt : (ptrdiff_t)0);
        goto out;
    }
    for (const char *p = end; p < txt + hlen; p++) /* the reference pads with spaces */
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = omni_fail(e, OMNI_E_FORMAT, "%s: unexpected bytes after the header JSON (at byte %td)", fpath,
                           p - txt);
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: header is not a JSON object", fpath);
        goto out;
    }

    const uint8_t *data = bytes + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;
    int n_ent = cJSON_GetArraySize(root), first = s->n, have_meta = 0;
    if (s->cap < s->n + n_ent) {
        st_tensor *t = realloc(s->t, sizeof *t * (size_t)(s->n + n_ent));
        if (!t) {
            rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory for %d tensors", fpath, n_ent);
            goto out;
        }
        s->t = t;
        s->cap = s->n + n_ent;
    }
    for (const cJSON *ent = root->child; ent; ent = ent->next) {
        if (!strcmp(ent->string, "__metadata__")) {
            if (have_meta++) {
                rc = omni_fail(e, OMNI_E_FORMAT, "%s: duplicate __metadata__", fpath);
                goto out;
            }
            if ((rc = st_parse_metadata(s, ent, fpath, keep_meta, e))) goto out;
            continue;
        }
        st_tensor *t = &s->t[s->n];
        memset(t, 0, sizeof *t);
        if ((rc = st_parse_entry(ent, fpath, data, dsize, t, e))) goto out;
        t->file = fpath;
        if (!(t->name = strdup(ent->string))) {
            rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", fpath);
            goto out;
        }
        s->n++; /* counted before the index insert so st_close frees the name on any failure below */
        int32_t old = st_index_add(&s->ix, s->n - 1, st_set_name_at, s->t);
        if (old == -2) {
            rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", fpath);
            goto out;
        }
        if (old >= 0) {
            if (s->t[old].file == fpath) rc = omni_fail(e, OMNI_E_FORMAT, "%s: duplicate tensor '%s'", fpath, t->name);
            else rc = omni_fail(e, OMNI_E_FORMAT, "%s: tensor '%s' is also in %s", fpath, t->name, s->t[old].file);
            goto out;
        }
    }

    /* No two tensors of this file may share bytes: sort the non-empty spans by begin and compare neighbours. */
    int ns = 0;
    spans = malloc(sizeof *spans * (size_t)(s->n - first + 1));
    if (!spans) {
        rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", fpath);
        goto out;
    }
    for (int k = first; k < s->n; k++) {
        if (!s->t[k].nbytes) continue; /* an empty tensor owns no bytes */
        uint64_t b = (uint64_t)((const uint8_t *)s->t[k].data - data);
        spans[ns++] = (st_span){ b, b + s->t[k].nbytes, k };
    }
    qsort(spans, (size_t)ns, sizeof *spans, st_span_cmp);
    for (int i = 1; i < ns; i++)
        if (spans[i].begin < spans[i - 1].end) {
            rc = omni_fail(e, OMNI_E_FORMAT, "%s: tensors '%s' [%llu,%llu) and '%s' [%llu,%llu) overlap", fpath,
                           s->t[spans[i - 1].k].name, (unsigned long long)spans[i - 1].begin,
                           (unsigned long long)spans[i - 1].end, s->t[spans[i].k].name,
                           (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
            goto out;
        }
out:
    free(spans);
    cJSON_Delete(root);
    free(txt);
    return rc;
}

int st_parse(const uint8_t *bytes, size_t size, const char *path, st_set **out, omni_err *e) {
    if (!out) return omni_fail(e, OMNI_E_ARG, "st_parse: no output pointer");
    *out = NULL;
    if (!path) path = "(memory)";
    if (!bytes && size) return omni_fail(e, OMNI_E_ARG, "%s: no bytes", path);
    st_set *s = st_set_new();
    const char *fp = s ? st_set_add_file(s, path, NULL, 0) : NULL;
    if (!fp) {
        st_close(s);
        return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
    }
    int rc = st_add_bytes(s, bytes ? bytes : (const uint8_t *)"", size, fp, 1, e);
    if (rc) {
        st_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* mmaps path and adds its tensors to s. */
static int st_add_file(st_set *s, const char *path, int keep_meta, omni_err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return omni_fail(e, OMNI_E_IO, "%s: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        int err = errno;
        close(fd);
        return omni_fail(e, OMNI_E_IO, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(stt.st_mode)) {
        close(fd);
        return omni_fail(e, OMNI_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)stt.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return omni_fail(e, OMNI_E_IO, "%s: too large to map", path);
    }
    size_t size = (size_t)stt.st_size;
    void *map = NULL;
    if (size) { /* mmap of 0 bytes fails; an empty file is caught as too short below */
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int err = errno;
            close(fd);
            return omni_fail(e, OMNI_E_IO, "%s: mmap: %s", path, strerror(err));
        }
    }
    close(fd);
    const char *fp = st_set_add_file(s, path, map, size);
    if (!fp) return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
    return st_add_bytes(s, map ? map : (const void *)"", size, fp, keep_meta, e);
}

int st_open_file(const char *path, st_set **out, omni_err *e) {
    if (!path || !out) return omni_fail(e, OMNI_E_ARG, "st_open_file: no path or output pointer");
    *out = NULL;
    st_set *s = st_set_new();
    if (!s) return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
    int rc = st_add_file(s, path, 1, e);
    if (rc) {
        st_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- sharded checkpoints ----------------------------------------------------------------------------------------- */

#define ST_INDEX_NAME "model.safetensors.index.json"

/* A shard must be a plain file name in the checkpoint folder: an index naming "../x" or "/etc/x" could otherwise make
 * us map any file on the machine. */
static int st_shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int st_cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int st_open_index(const char *dir, const char *ipath, st_set **out, omni_err *e) {
    size_t len = 0;
    char *txt = omni_read_file(ipath, &len, e);
    if (!txt) return OMNI_E_IO; /* e already names the file */
    int rc = 0;
    const char **shards = NULL;
    st_set *s = NULL;
    cJSON *root = cJSON_ParseWithLength(txt, len);
    if (!root) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: not valid JSON", ipath);
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: weight_map missing or not an object", ipath);
        goto out;
    }
    int n = cJSON_GetArraySize(wm), n_sh = 0;
    if (n == 0) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: weight_map is empty", ipath);
        goto out;
    }
    /* Distinct shard names, validated; opened in sorted order so the first shard (model-00001-...) comes first and
     * provides the metadata. */
    shards = malloc(sizeof *shards * (size_t)n);
    if (!shards) {
        rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (const cJSON *kv = wm->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv) || !kv->valuestring) {
            rc = omni_fail(e, OMNI_E_FORMAT, "%s: weight_map entry '%s' is not a string", ipath, kv->string);
            goto out;
        }
        if (!st_shard_name_ok(kv->valuestring)) {
            rc = omni_fail(e, OMNI_E_FORMAT, "%s: shard '%s' (for tensor '%s') is not a plain file name", ipath,
                           kv->valuestring, kv->string);
            goto out;
        }
        shards[n_sh++] = kv->valuestring;
    }
    qsort(shards, (size_t)n_sh, sizeof *shards, st_cmp_str);
    int u = 0;
    for (int i = 0; i < n_sh; i++)
        if (!u || strcmp(shards[u - 1], shards[i])) shards[u++] = shards[i];
    n_sh = u;

    if (!(s = st_set_new())) {
        rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    char path[4096];
    for (int i = 0; i < n_sh; i++) {
        omni_path_join(path, sizeof path, dir, shards[i]);
        if (!omni_file_exists(path)) {
            rc = omni_fail(e, OMNI_E_IO, "%s: shard %s named by the index does not exist", path, shards[i]);
            goto out;
        }
        if ((rc = st_add_file(s, path, i == 0, e))) goto out;
    }
    for (const cJSON *kv = wm->child; kv; kv = kv->next) {
        const st_tensor *t = st_find(s, kv->string);
        omni_path_join(path, sizeof path, dir, kv->valuestring);
        if (!t) {
            rc = omni_fail(e, OMNI_E_TENSOR, "%s: tensor '%s' named by the index is missing from shard %s", path,
                           kv->string, kv->valuestring);
            goto out;
        }
        if (strcmp(t->file, path)) {
            rc = omni_fail(e, OMNI_E_TENSOR, "%s: tensor '%s' is in %s, not in shard %s as the index says", path,
                           kv->string, t->file, kv->valuestring);
            goto out;
        }
    }
out:
    free(shards);
    cJSON_Delete(root);
    free(txt);
    if (rc) st_close(s);
    else *out = s;
    return rc;
}

int st_open_dir(const char *dir, st_set **out, omni_err *e) {
    if (!dir || !out) return omni_fail(e, OMNI_E_ARG, "st_open_dir: no folder or output pointer");
    *out = NULL;
    char path[4096];
    omni_path_join(path, sizeof path, dir, ST_INDEX_NAME);
    if (omni_file_exists(path)) return st_open_index(dir, path, out, e);
    omni_path_join(path, sizeof path, dir, "model.safetensors");
    if (omni_file_exists(path)) return st_open_file(path, out, e);
    return omni_fail(e, OMNI_E_IO, "%s: neither model.safetensors nor " ST_INDEX_NAME " found", dir);
}

/* ---- writer ------------------------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* owned when copied (then == owned) */
    void *owned;
    size_t nbytes;
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    int n, cap;
    st_index ix;
    char **meta; /* key/value pairs */
    int n_meta;
};

static const char *st_writer_name_at(const void *arr, int i) { return ((const st_wtensor *)arr)[i].name; }

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->t);
    free(w->ix.slot);
    for (int i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->meta);
    free(w);
}

static int st_writer_push(st_writer *w, const char *name, st_dtype t, int n_dims, const int64_t *shape,
                          const void *data, size_t nbytes, int copy) {
    uint64_t want;
    if (!w || !name || (unsigned)t >= ST_DTYPE_COUNT || n_dims < 0 || n_dims > ST_MAX_DIMS || (n_dims && !shape) ||
        !strcmp(name, "__metadata__") || (nbytes && !data))
        return OMNI_E_ARG;
    if (st_byte_size(t, n_dims, shape, &want) || want != nbytes) return OMNI_E_ARG;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        st_wtensor *nt = realloc(w->t, sizeof *nt * (size_t)cap);
        if (!nt) return OMNI_E_NOMEM;
        w->t = nt;
        w->cap = cap;
    }
    st_wtensor *x = &w->t[w->n];
    memset(x, 0, sizeof *x);
    if (st_index_find(&w->ix, name, st_writer_name_at, w->t) >= 0) return OMNI_E_ARG; /* duplicate name */
    if (!(x->name = strdup(name))) return OMNI_E_NOMEM;
    if (copy && nbytes) {
        if (!(x->owned = malloc(nbytes))) {
            free(x->name);
            return OMNI_E_NOMEM;
        }
        memcpy(x->owned, data, nbytes);
        data = x->owned;
    }
    x->dtype = t;
    x->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) x->shape[i] = shape[i];
    x->data = data;
    x->nbytes = nbytes;
    if (st_index_add(&w->ix, w->n, st_writer_name_at, w->t) == -2) {
        free(x->name);
        free(x->owned);
        return OMNI_E_NOMEM;
    }
    w->n++;
    return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype t, int n_dims, const int64_t *shape, const void *data,
                  size_t nbytes) {
    return st_writer_push(w, name, t, n_dims, shape, data, nbytes, 1);
}

int st_writer_add_ref(st_writer *w, const char *name, st_dtype t, int n_dims, const int64_t *shape, const void *data,
                      size_t nbytes) {
    return st_writer_push(w, name, t, n_dims, shape, data, nbytes, 0);
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return OMNI_E_ARG;
    char *v = strdup(value);
    if (!v) return OMNI_E_NOMEM;
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return 0;
        }
    char **m = realloc(w->meta, sizeof *m * (size_t)(2 * w->n_meta + 2));
    char *k = strdup(key);
    if (!m || !k) {
        if (m) w->meta = m;
        free(k);
        free(v);
        return OMNI_E_NOMEM;
    }
    w->meta = m;
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return 0;
}

/* Growable text buffer for the header. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} st_buf;

static void st_buf_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void st_buf_str(st_buf *b, const char *s) { st_buf_put(b, s, strlen(s)); }
static void st_buf_fmt(st_buf *b, const char *fmt, unsigned long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    st_buf_put(b, tmp, (size_t)n);
}

/* A JSON string literal: quote, backslash and control characters escaped; other bytes (UTF-8) as they are. */
static void st_buf_json(st_buf *b, const char *s) {
    st_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            st_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            st_buf_fmt(b, "\\u%04llx", c);
        } else {
            st_buf_put(b, (const char *)&c, 1);
        }
    }
    st_buf_put(b, "\"", 1);
}

static int st_write_all(int fd, const void *p, size_t n) {
    const uint8_t *q = p;
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = write(fd, q, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Data order: larger element sizes first (stable), so with the header padded to 8 bytes every tensor starts at a
 * multiple of its element size — the same layout rule as the reference's prepare() (sort by dtype, descending). */
static int st_worder_cmp(const void *a, const void *b) {
    const st_wtensor *const *x = a, *const *y = b;
    size_t sx = st_dtype_size((*x)->dtype), sy = st_dtype_size((*y)->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return *x < *y ? -1 : *x > *y;
}

int st_writer_save(st_writer *w, const char *path, omni_err *e) {
    if (!w || !path) return omni_fail(e, OMNI_E_ARG, "%s: no writer", path ? path : "(null)");
    const st_wtensor **ord = malloc(sizeof *ord * (size_t)(w->n + 1));
    if (!ord) return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < w->n; i++) ord[i] = &w->t[i];
    qsort(ord, (size_t)w->n, sizeof *ord, st_worder_cmp);

    st_buf b = { 0 };
    st_buf_put(&b, "{", 1);
    if (w->n_meta) {
        st_buf_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) st_buf_put(&b, ",", 1);
            st_buf_json(&b, w->meta[2 * i]);
            st_buf_put(&b, ":", 1);
            st_buf_json(&b, w->meta[2 * i + 1]);
        }
        st_buf_put(&b, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_wtensor *t = ord[i];
        if (i || w->n_meta) st_buf_put(&b, ",", 1);
        st_buf_json(&b, t->name);
        st_buf_str(&b, ":{\"dtype\":\"");
        st_buf_str(&b, st_dtype_name(t->dtype));
        st_buf_str(&b, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) st_buf_fmt(&b, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        st_buf_fmt(&b, "],\"data_offsets\":[%llu,", off);
        off += t->nbytes;
        st_buf_fmt(&b, "%llu]}", off);
    }
    st_buf_put(&b, "}", 1);
    while (b.n % 8) st_buf_put(&b, " ", 1);
    if (b.oom) {
        free(b.p);
        free(ord);
        return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory building the header", path);
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    int fd = -1, rc = 0, created = 0;
    if (!tmp) {
        rc = omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    if ((fd = mkstemp(tmp)) < 0) {
        rc = omni_fail(e, OMNI_E_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
        goto out;
    }
    created = 1;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    int bad = fchmod(fd, 0644) || st_write_all(fd, len8, 8) || st_write_all(fd, b.p, b.n);
    for (int i = 0; i < w->n && !bad; i++) bad = st_write_all(fd, ord[i]->data, ord[i]->nbytes);
    if (bad || fsync(fd)) {
        rc = omni_fail(e, OMNI_E_IO, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    int cr = close(fd);
    fd = -1;
    if (cr || rename(tmp, path)) {
        rc = omni_fail(e, OMNI_E_IO, "%s: cannot finish the file: %s", path, strerror(errno));
        goto out;
    }
    /* make the rename itself durable */
    char *slash = strrchr(tmp, '/');
    if (slash) *slash = 0;
    int dfd = open(slash ? (slash == tmp ? "/" : tmp) : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    created = 0;
out:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    free(b.p);
    free(ord);
    return rc;
}
