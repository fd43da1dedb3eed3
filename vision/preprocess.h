/* preprocess.h — images and frame sequences to the vision encoder's input: `pixel_values [t*H*W, 3*2*16*16]` float32
 * and `grid_thw {t, H, W}` (H, W in 16-pixel patches), as transformers 5.17's Qwen2VLImageProcessor /
 * Qwen2VLVideoProcessor produce them with Qwen3-Omni's preprocessor_config.json.
 *
 * Per image: smart_resize (factor patch*merge = 32) -> bicubic resize (resize.h) -> (x - mean/r) / (std/r) with
 * r = rescale_factor (the torchvision backend's fused rescale+normalise) -> the frame repeated to temporal_patch_size
 * -> patches in merge-block order: row = ((t*H/2 + by)*W/2 + bx)*4 + my*2 + mx for patch (2*by+my, 2*bx+mx), each
 * row laid out [channel 3][time 2][py 16][px 16]. */
#ifndef VISION_PREPROCESS_H
#define VISION_PREPROCESS_H

#include <stdint.h>

#include "image.h"
#include "vision.h"

typedef struct {
    int32_t patch_size;          /* 16 */
    int32_t temporal_patch_size; /* 2 */
    int32_t merge_size;          /* 2 */
    int64_t min_pixels;          /* images: 3136 (preprocessor_config min_pixels / size.shortest_edge) */
    int64_t max_pixels;          /* images: 12845056 (max_pixels / size.longest_edge) */
    int64_t video_min_pixels;    /* per frame: 131072 = 128*32*32 (Qwen3OmniMoeProcessor videos_kwargs size) */
    int64_t video_max_pixels;    /* per frame: 786432 = 768*32*32 */
    int32_t video_cap_pixels_per_frame; /* Qwen2VLVideoProcessor cap_pixels_per_frame (5.17 default: off) */
    int64_t video_max_tokens;    /* 128000, used only with the cap */
    double video_fps;            /* fps assumed when a caller passes none: 1.0, the processor's default */
    float image_mean[3];         /* 0.5 */
    float image_std[3];          /* 0.5 */
    double rescale_factor;       /* 1/255 */
    int32_t do_resize, do_rescale, do_normalize; /* 1 */
} vision_params;

/* The encoder input for one image or one video. */
typedef struct {
    float *pixel_values;    /* [rows][dim], malloc'd (vision_patches_free) */
    int64_t rows;           /* grid_t * grid_h * grid_w */
    int32_t dim;            /* 3 * temporal_patch_size * patch_size^2 = 1536 */
    int32_t grid_t, grid_h, grid_w; /* grid_thw: temporal groups, patch rows, patch columns */
    int32_t resized_h, resized_w;   /* pixels after smart_resize */
    double second_per_grid; /* videos: temporal_patch_size / fps (video_second_per_grid); images: 0 */
} vision_patches;

void vision_default_params(vision_params *p);
/* Reads the image-processor fields of a preprocessor_config.json text over *p (fields absent keep their value):
 * patch_size, temporal_patch_size, merge_size, min_pixels/max_pixels or size.{shortest_edge,longest_edge},
 * image_mean, image_std, rescale_factor, do_resize, do_rescale, do_normalize. Errors name the field. */
int vision_params_from_json(const char *json_text, vision_params *p, vision_err *e);

int vision_preprocess_image(const vision_image *img, const vision_params *p, vision_patches *out, vision_err *e);
/* n frames of one video, all the same size. Each is resized with the video pixel limits; an odd count repeats
 * the last frame; 2 consecutive frames form one temporal patch. fps <= 0 uses p->video_fps. */
int vision_preprocess_frames(const vision_image *const *frames, int n, double fps, const vision_params *p,
                             vision_patches *out, vision_err *e);
void vision_patches_free(vision_patches *out); /* frees pixel_values and zeroes the struct; NULL is fine */

/* Loads every PNG/JPEG/GIF/BMP/WebP/TIFF file of a folder (by extension), sorted by name, as video frames.
 * *frames is a malloc'd array of n images; free with vision_frames_free. */
int vision_frames_load_dir(const char *dir, const vision_limits *lim, vision_image ***frames, int *n, vision_err *e);
void vision_frames_free(vision_image **frames, int n);

#endif
