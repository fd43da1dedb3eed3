/* cmd_listen.c — `omni listen`: a line-mode precursor of the voice turn. Captures from the microphone, lets the
 * voice-activity detector find the start and the end of one utterance, then answers it in text. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "media.h"
#ifdef OMNI_HEADLESS
int cmd_listen(int argc, char **argv) {
    (void)argc, (void)argv;
    return cli_err("listen", "this omni was built headless (make HEADLESS=1): no microphone support");
}
#else
#include "capture.h"
#include "vad.h"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}
static int abort_cb(void *ud) {
    (void)ud;
    return g_stop;
}
static int on_token(int32_t id, const char *piece, void *ud) {
    (void)id, (void)ud;
    fputs(piece, stdout);
    fflush(stdout);
    return g_stop;
}

static void usage(FILE *f) {
    fprintf(f, "usage: omni listen -m DIR [--input-device N] [--list-devices] [-p TEXT] [options]\n\n"
               "Listens on the microphone until the voice-activity detector hears the end of an utterance (or\n"
               "--max-seconds pass), then answers it in text. Needs a Qwen3-Omni checkpoint (audio encoder).\n\n"
               "      --list-devices     list audio input devices and exit\n"
               "      --input-device N   capture device index (default: the system default input)\n"
               "      --max-seconds S    longest utterance to record (default 30)\n"
               "      --timeout S        give up when nobody speaks for S seconds (default 60)\n"
               "  -p, --prompt TEXT      text to send along with the speech (e.g. \"Answer briefly.\")\n"
               "  -s, --system TEXT      a system message\n\n");
    cli_help_common(f, 1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_listen(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *prompt = NULL, *system = NULL;
    int device = -1, list = 0;
    double max_s = 30, timeout_s = 60;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--list-devices")) list = 1;
        else if (!strcmp(argv[i], "--input-device") && i + 1 < argc) device = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) timeout_s = atof(argv[++i]);
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--system")) && i + 1 < argc) system = argv[++i];
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return CLI_USAGE;
            if (r == 0) {
                fprintf(stderr, "omni listen: unknown option '%s'\n", argv[i]);
                usage(stderr);
                return CLI_USAGE;
            }
        }
    }
    if (max_s <= 0.5 || max_s > 3600 || timeout_s <= 0) {
        fprintf(stderr, "omni listen: --max-seconds must be in (0.5, 3600] and --timeout positive\n");
        return CLI_USAGE;
    }
    audio_err ae = { { 0 } };
    if (list) {
        audio_device_info *devs = NULL;
        int n = 0;
        if (audio_capture_list(&devs, &n, &ae)) return cli_err("listen", "%s", ae.msg);
        if (!n) printf("no audio input devices found\n");
        for (int i = 0; i < n; i++)
            printf("%3d%s %-40s %-10s %d ch, %.0f Hz\n", devs[i].index, devs[i].is_default ? "*" : " ", devs[i].name,
                   devs[i].host_api, devs[i].max_input_channels, devs[i].default_rate);
        free(devs);
        return CLI_OK;
    }
    omni_model *m = cli_open_model(&o);
    if (!m) return CLI_ERR;
    cli_sampling_defaults(&o, m);
    audio_capture_params cp = audio_capture_default_params();
    cp.device = device;
    audio_capture *cap = NULL;
    if (audio_capture_open(&cap, &cp, &ae) || audio_capture_start(cap, &ae)) {
        audio_capture_free(cap);
        omni_model_free(m);
        return cli_err("listen", "no microphone: %s (text still works: omni chat)", ae.msg);
    }
    audio_vad_params vp = audio_vad_default_params(AUDIO_CAPTURE_RATE);
    audio_vad *vad = NULL;
    if (audio_vad_init(&vad, &vp, &ae)) {
        audio_capture_free(cap);
        omni_model_free(m);
        return cli_err("listen", "%s", ae.msg);
    }
    signal(SIGINT, on_sigint);
    fprintf(stderr, "listening on %s — speak now (Ctrl-C to stop)\n", audio_capture_device_name(cap));
    int64_t cap_samples = (int64_t)((max_s + timeout_s + 2) * AUDIO_CAPTURE_RATE);
    float *pcm = malloc(sizeof(float) * (size_t)cap_samples);
    int64_t have = 0, start = -1, end = -1;
    double t0 = now_s();
    int rc = pcm ? 0 : OMNI_E_NOMEM;
    while (!rc && !g_stop && end < 0) {
        float buf[1600];
        int64_t n = audio_capture_read(cap, buf, 1600, &ae);
        if (n < 0) {
            rc = cli_err("listen", "%s", ae.msg);
            break;
        }
        if (n == 0) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        if (have + n > cap_samples) n = cap_samples - have;
        memcpy(pcm + have, buf, sizeof(float) * (size_t)n);
        have += n;
        audio_vad_push(vad, buf, n);
        audio_vad_event ev;
        while (audio_vad_pop(vad, &ev)) {
            if (ev.type == AUDIO_VAD_START && start < 0) {
                start = ev.sample;
                fprintf(stderr, "(hearing you)\n");
            } else if (ev.type == AUDIO_VAD_END && start >= 0) end = ev.sample + 1;
        }
        if (start >= 0 && have - start > (int64_t)(max_s * AUDIO_CAPTURE_RATE)) end = have;
        if (start < 0 && now_s() - t0 > timeout_s) {
            fprintf(stderr, "omni listen: heard nothing for %.0f s\n", timeout_s);
            rc = CLI_ERR;
        }
        if (have >= cap_samples && end < 0) end = have;
    }
    audio_capture_free(cap);
    audio_vad_free(vad);
    if (g_stop && end < 0) rc = 130;
    if (!rc) {
        /* a little context before the detected start, as the detector needs a few frames to decide */
        int64_t s0 = start - AUDIO_CAPTURE_RATE / 5 > 0 ? start - AUDIO_CAPTURE_RATE / 5 : 0;
        fprintf(stderr, "(%.1f s of speech)\n", (double)(end - s0) / AUDIO_CAPTURE_RATE);
        media_audio au = { NULL, pcm + s0, end - s0 };
        omni_item items[2] = { { OMNI_ITEM_AUDIO, NULL }, { OMNI_ITEM_TEXT, prompt } };
        omni_item sys_item = { OMNI_ITEM_TEXT, system };
        omni_message msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (omni_message){ "system", &sys_item, 1 };
        msgs[nm++] = (omni_message){ "user", items, prompt ? 2 : 1 };
        media_prompt mp;
        char err[600];
        omni_session_params sp = omni_session_default_params();
        sp.abort = abort_cb;
        omni_session *s = NULL;
        if (media_prompt_build(m, o.model, msgs, nm, &au, 1, NULL, 0, &mp, err, sizeof err)) rc = cli_err("listen", "%s", err);
        else {
            if (omni_session_new(m, &sp, &s)) rc = cli_err("listen", "%s", omni_model_error(m));
            else if (omni_session_append_mm(s, mp.ids, mp.n, &mp.mm, NULL, 0))
                rc = cli_err("listen", "%s", omni_session_error(s));
            else {
                int ng = 0;
                int r = omni_generate(s, &o.sp, o.max_tokens, on_token, NULL, NULL, &ng);
                printf("\n");
                if (r && r != OMNI_E_CANCELLED) rc = cli_err("listen", "%s", omni_session_error(s));
            }
            media_prompt_free(&mp);
            omni_session_free(s);
        }
    }
    free(pcm);
    omni_model_free(m);
    return rc;
}
#endif
