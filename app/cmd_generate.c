/* cmd_generate.c — `omni generate` (one prompt, streamed reply) and `omni chat` (line-mode conversation).
 * Both render the checkpoint's chat template, keep the KV cache between turns (only the new part of the prompt
 * is prefilled: the longest common prefix with what the session holds is kept), and stream text as it comes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "media.h"

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}
static int abort_cb(void *ud) {
    (void)ud;
    return g_interrupted;
}

typedef struct {
    FILE *out;
    char *text;  /* the reply collected for the conversation history */
    size_t len, cap;
} stream_state;

static int on_token(int32_t id, const char *piece, void *ud) {
    (void)id;
    stream_state *st = ud;
    size_t n = strlen(piece);
    if (n) {
        fputs(piece, st->out);
        fflush(st->out);
        if (st->len + n + 1 > st->cap) {
            size_t cap = (st->cap + n + 1) * 2;
            char *p = realloc(st->text, cap);
            if (!p) return 1;
            st->text = p;
            st->cap = cap;
        }
        memcpy(st->text + st->len, piece, n);
        st->len += n;
        st->text[st->len] = 0;
    }
    return g_interrupted;
}

typedef struct {
    char *role;
    char *text;
} turn;

/* Renders the conversation, tokenizes it, keeps the session's common prefix and prefills the rest. */
static int prefill_conversation(omni_model *m, omni_session *s, turn *turns, int n_turns, int *n_prompt) {
    omni_message *msgs = calloc((size_t)n_turns, sizeof *msgs);
    omni_item *items = calloc((size_t)n_turns, sizeof *items);
    if (!msgs || !items) {
        free(msgs), free(items);
        return OMNI_E_NOMEM;
    }
    for (int i = 0; i < n_turns; i++) {
        items[i] = (omni_item){ OMNI_ITEM_TEXT, turns[i].text };
        msgs[i] = (omni_message){ turns[i].role, &items[i], 1 };
    }
    char *prompt = omni_chat_render(m, msgs, n_turns, 1);
    free(msgs);
    free(items);
    if (!prompt) {
        fprintf(stderr, "omni: cannot render the chat template\n");
        return OMNI_E_ARG;
    }
    int cap = (int)strlen(prompt) + 16;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    int n = ids ? omni_tokenize(m, prompt, strlen(prompt), ids, cap) : OMNI_E_NOMEM;
    free(prompt);
    if (n < 0) {
        free(ids);
        fprintf(stderr, "omni: %s\n", omni_model_error(m)[0] ? omni_model_error(m) : omni_strerror(n));
        return n;
    }
    int32_t nh;
    const int32_t *hist = omni_session_history(s, &nh);
    int common = 0;
    while (common < nh && common < n - 1 && hist[common] == ids[common]) common++;
    int rc = omni_session_truncate(s, common);
    if (!rc) rc = omni_session_append(s, ids + common, n - common, NULL, 0);
    if (rc) fprintf(stderr, "omni: %s\n", omni_session_error(s));
    *n_prompt = n;
    free(ids);
    return rc;
}

static void usage_generate(FILE *f) {
    fprintf(f, "usage: omni generate -m DIR [-p TEXT] [--audio FILE.wav]... [--image FILE]... [options]\n\n"
               "Renders one user turn (audio, images, then TEXT) with the checkpoint's chat template and streams\n"
               "the reply to stdout. Audio and images need a Qwen3-Omni checkpoint.\n\n"
               "  -p, --prompt TEXT      the user's message (use - to read it from stdin)\n"
               "      --audio FILE       a WAV file (any rate/channels; resampled to 16 kHz); repeatable\n"
               "      --image FILE       a PNG/JPEG/WebP/BMP/GIF/TIFF image; repeatable\n"
               "      --video DIR        a video as a folder of frames (sorted by name); repeatable\n"
               "      --fps F            frames per second of the --video folders (default 1.0)\n"
               "  -s, --system TEXT      a system message\n"
               "      --stats            print prompt/prefill/decode timing to stderr at the end\n\n");
    cli_help_common(f, 1);
}

static char *read_stdin(void) {
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    size_t r;
    while ((r = fread(b + len, 1, cap - len - 1, stdin)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *p = realloc(b, cap *= 2);
            if (!p) {
                free(b);
                return NULL;
            }
            b = p;
        }
    }
    b[len] = 0;
    return b;
}

#include <time.h>
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_generate(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *prompt = NULL, *system = NULL;
    media_audio audios[16];
    media_visual images[16];
    int n_audio = 0, n_image = 0;
    double fps = 0;
    int stats = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fps") && i + 1 < argc) {
            fps = atof(argv[++i]);
            if (!(fps > 0 && fps <= 240)) {
                fprintf(stderr, "omni generate: --fps must be in (0, 240]\n");
                return CLI_USAGE;
            }
            for (int k = 0; k < n_image; k++)
                if (images[k].is_video && images[k].fps == 0) images[k].fps = fps;
            continue;
        }
        if (!strcmp(argv[i], "--audio") || !strcmp(argv[i], "--image") || !strcmp(argv[i], "--video")) {
            int is_audio = argv[i][2] == 'a';
            if (i + 1 >= argc) {
                fprintf(stderr, "omni generate: %s needs a file\n", argv[i]);
                return CLI_USAGE;
            }
            if ((is_audio ? n_audio : n_image) == 16) {
                fprintf(stderr, "omni generate: at most 16 files per %s\n", argv[i]);
                return CLI_USAGE;
            }
            if (is_audio) audios[n_audio++] = (media_audio){ argv[++i], NULL, 0 };
            else {
                int vid = argv[i][2] == 'v';
                images[n_image++] = (media_visual){ argv[++i], vid, vid ? fps : 0 };
            }
            continue;
        }
        if (cli_is_help(argv[i])) {
            usage_generate(stdout);
            return CLI_OK;
        }
        if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--system")) && i + 1 < argc) system = argv[++i];
        else if (!strcmp(argv[i], "--stats")) stats = 1;
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return CLI_USAGE;
            if (r == 0) {
                fprintf(stderr, "omni generate: unknown option '%s'\n", argv[i]);
                usage_generate(stderr);
                return CLI_USAGE;
            }
        }
    }
    if (!prompt && !n_audio && !n_image) {
        fprintf(stderr, "omni generate: no prompt (use -p TEXT, --audio FILE or --image FILE)\n");
        usage_generate(stderr);
        return CLI_USAGE;
    }
    char *owned = NULL;
    if (prompt && !strcmp(prompt, "-")) {
        if (!(owned = read_stdin())) return cli_err("generate", "cannot read the prompt from stdin");
        prompt = owned;
    }
    omni_model *m = cli_open_model(&o);
    if (!m) {
        free(owned);
        return CLI_ERR;
    }
    cli_sampling_defaults(&o, m);
    omni_session_params sp = omni_session_default_params();
    sp.abort = abort_cb;
    signal(SIGINT, on_sigint);
    omni_session *s = NULL;
    int rc = omni_session_new(m, &sp, &s);
    if (rc) {
        fprintf(stderr, "omni: %s\n", omni_model_error(m));
        omni_model_free(m);
        free(owned);
        return CLI_ERR;
    }
    int n_prompt = 0;
    double t0 = now_s();
    if (n_audio || n_image) {
        /* one user turn: the audios, the images, then the text, as separate content items */
        omni_item items[34];
        int ni = 0;
        for (int k = 0; k < n_audio; k++) items[ni++] = (omni_item){ OMNI_ITEM_AUDIO, NULL };
        for (int k = 0; k < n_image; k++) items[ni++] = (omni_item){ images[k].is_video ? OMNI_ITEM_VIDEO : OMNI_ITEM_IMAGE, NULL };
        if (prompt) items[ni++] = (omni_item){ OMNI_ITEM_TEXT, prompt };
        omni_item sys_item = { OMNI_ITEM_TEXT, system };
        omni_message msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (omni_message){ "system", &sys_item, 1 };
        msgs[nm++] = (omni_message){ "user", items, ni };
        media_prompt mp;
        char err[600];
        const char *dir = o.mp.synthetic ? NULL : o.model;
        rc = media_prompt_build(m, dir, msgs, nm, audios, n_audio, images, n_image, &mp, err, sizeof err);
        if (rc) fprintf(stderr, "omni: %s\n", err);
        else {
            n_prompt = mp.n;
            rc = omni_session_append_mm(s, mp.ids, mp.n, &mp.mm, NULL, 0);
            if (rc) fprintf(stderr, "omni: %s\n", omni_session_error(s));
            media_prompt_free(&mp);
        }
    } else {
        turn turns[2];
        int nt = 0;
        if (system) turns[nt++] = (turn){ "system", (char *)system };
        turns[nt++] = (turn){ "user", (char *)prompt };
        rc = prefill_conversation(m, s, turns, nt, &n_prompt);
    }
    double t1 = now_s();
    int n_gen = 0;
    stream_state st = { stdout, NULL, 0, 0 };
    if (!rc) {
        rc = omni_generate(s, &o.sp, o.max_tokens, on_token, &st, NULL, &n_gen);
        if (rc && rc != OMNI_E_CANCELLED) fprintf(stderr, "\nomni: %s\n", omni_session_error(s));
        printf("\n");
    }
    double t2 = now_s();
    if (stats)
        fprintf(stderr, "prompt %d tokens in %.3f s (%.1f t/s); generated %d tokens in %.3f s (%.1f t/s)\n", n_prompt,
                t1 - t0, n_prompt / (t1 - t0), n_gen, t2 - t1, n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0);
    free(st.text);
    free(owned);
    omni_session_free(s);
    omni_model_free(m);
    if (rc == OMNI_E_CANCELLED) return 130;
    return rc ? CLI_ERR : CLI_OK;
}

static void usage_chat(FILE *f) {
    fprintf(f, "usage: omni chat -m DIR [options]\n\n"
               "A line-mode text chat. Type a message and press Enter; the reply streams in.\n"
               "Commands: /reset (forget the conversation), /system TEXT (set the system message and reset),\n"
               "/quit (or Ctrl-D). Ctrl-C stops the current reply.\n\n"
               "  -s, --system TEXT      a system message\n\n");
    cli_help_common(f, 1);
}

int cmd_chat(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage_chat(stdout);
            return CLI_OK;
        }
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--system")) && i + 1 < argc) system = argv[++i];
        else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return CLI_USAGE;
            if (r == 0) {
                fprintf(stderr, "omni chat: unknown option '%s'\n", argv[i]);
                usage_chat(stderr);
                return CLI_USAGE;
            }
        }
    }
    omni_model *m = cli_open_model(&o);
    if (!m) return CLI_ERR;
    cli_sampling_defaults(&o, m);
    omni_session_params sp = omni_session_default_params();
    sp.abort = abort_cb;
    signal(SIGINT, on_sigint);
    omni_session *s = NULL;
    if (omni_session_new(m, &sp, &s)) {
        fprintf(stderr, "omni: %s\n", omni_model_error(m));
        omni_model_free(m);
        return CLI_ERR;
    }
    turn *turns = NULL;
    int nt = 0, cap = 0, rc = 0;
    char line[8192];
    char *sys = system ? strdup(system) : NULL;
    for (;;) {
        fputs("> ", stdout);
        fflush(stdout);
        g_interrupted = 0;
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset") || !strncmp(line, "/system ", 8)) {
            if (line[1] == 's') {
                free(sys);
                sys = strdup(line + 8);
            }
            for (int i = 0; i < nt; i++) free(turns[i].text);
            nt = 0;
            omni_session_reset(s);
            printf("(conversation cleared)\n");
            continue;
        }
        if (nt + 3 > cap) {
            cap = cap ? cap * 2 : 16;
            turn *p = realloc(turns, sizeof *p * (size_t)cap);
            if (!p) break;
            turns = p;
        }
        if (nt == 0 && sys) turns[nt++] = (turn){ "system", strdup(sys) };
        turns[nt++] = (turn){ "user", strdup(line) };
        int n_prompt;
        rc = prefill_conversation(m, s, turns, nt, &n_prompt);
        if (rc == OMNI_E_CONTEXT) {
            /* keep the system message and the newest turn; drop the oldest history */
            printf("(context full: earlier turns forgotten)\n");
            int keep0 = turns[0].role[0] == 's';
            for (int i = keep0; i < nt - 1; i++) free(turns[i].text);
            turns[keep0] = turns[nt - 1];
            nt = keep0 + 1;
            omni_session_reset(s);
            rc = prefill_conversation(m, s, turns, nt, &n_prompt);
        }
        if (rc) {
            free(turns[--nt].text);
            if (rc == OMNI_E_CANCELLED) printf("(stopped)\n");
            continue;
        }
        stream_state st = { stdout, NULL, 0, 0 };
        int n_gen = 0;
        rc = omni_generate(s, &o.sp, o.max_tokens, on_token, &st, NULL, &n_gen);
        printf("\n");
        if (rc && rc != OMNI_E_CANCELLED) fprintf(stderr, "omni: %s\n", omni_session_error(s));
        turns[nt++] = (turn){ "assistant", st.text ? st.text : strdup("") };
    }
    for (int i = 0; i < nt; i++) free(turns[i].text);
    free(turns);
    free(sys);
    omni_session_free(s);
    omni_model_free(m);
    return CLI_OK;
}
