/* bench_config.h — synthetic configs for the encoder benchmarks (bench_config.c). */
#ifndef OMNI_APP_BENCH_CONFIG_H
#define OMNI_APP_BENCH_CONFIG_H

#include <stddef.h>

#include "cli.h"

/* Writes <tmpdir>/config.json: src with the thinker text model shrunk to one small layer and every part but
 * thinker_config.<keep> ("audio_config" or "vision_config") removed. Returns 0 and fills dir/path (the caller
 * removes both), or prints why and returns -1. */
int bench_shrunk_config(const char *src, const char *keep, char *dir, size_t dcap, char *path, size_t pcap);

/* Opens o->model for an encoder benchmark: a real checkpoint as it is; a config (o->mp.synthetic, or no model at all:
 * default_cfg) through bench_shrunk_config, removing the temporary file afterwards. *t_load gets the seconds the
 * load took. Prints why and returns NULL on failure. */
omni_model *bench_open_encoder_model(cli_opts *o, const char *default_cfg, const char *keep, double *t_load);

#endif
