/* media.h — turning files into model inputs for the commands: WAV → 16 kHz → log-mel features, image files →
 * pixel_values/grid, and a multimodal user turn (placeholders expanded, features encoded) for a session. */
#ifndef OMNI_APP_MEDIA_H
#define OMNI_APP_MEDIA_H

#include <stdint.h>

#include "omni.h"

/* log-mel features [128][*frames] of a WAV file (any format/rate the reader takes, resampled to 16 kHz) */
int media_audio_features(const char *path, float **mel, int *frames, char *err, size_t err_cap);

/* An audio input: a WAV file, or 16 kHz mono samples already in memory (path NULL). */
typedef struct {
    const char *path;
    const float *pcm16k;
    int64_t n;
} media_audio;
/* pixel_values [t*h*w][dim] and the grid of an image file, preprocessed with the checkpoint's
 * preprocessor_config.json (model_dir may be NULL: Qwen3-Omni defaults) */
int media_image_patches(const char *model_dir, const char *path, float **pixels, omni_grid *grid, char *err,
                        size_t err_cap);

/* pixel_values and grid of a video given as a folder of frames (sorted by name) sampled at fps frames per second;
 * *second_per_grid = temporal_patch_size / fps */
int media_video_patches(const char *model_dir, const char *dir, double fps, float **pixels, omni_grid *grid,
                        float *second_per_grid, char *err, size_t err_cap);

/* An image file or a video (folder of frames) for a prompt. */
typedef struct {
    const char *path;
    int is_video;
    double fps; /* videos: frames per second of the folder's frames (0 = the processor's default, 1.0) */
} media_visual;

/* A prompt with media: the chat-rendered ids with each placeholder expanded to its token count, and the features. */
typedef struct {
    int32_t *ids;
    int n;
    omni_mm mm;
    /* owned storage behind mm */
    int32_t *audio_tokens;
    float *audio_embeds, *image_embeds, *deepstack;
    omni_grid *grids;
    float *second_per_grid;
} media_prompt;

/* Encodes the audios, images and videos, renders `messages` with the chat template (AUDIO items in the order of
 * `audios`, IMAGE/VIDEO items in the order of `visuals`), tokenizes and expands placeholders. */
int media_prompt_build(omni_model *m, const char *model_dir, const omni_message *msgs, int n_msgs,
                       const media_audio *audios, int n_audio, const media_visual *visuals, int n_visual,
                       media_prompt *out, char *err, size_t err_cap);
void media_prompt_free(media_prompt *p);

#endif
