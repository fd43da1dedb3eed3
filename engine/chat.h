/* chat.h — ChatML prompts rendered natively, the way the checkpoints' Jinja chat templates render them.
 *
 * Two templates are reproduced: Qwen3-Omni's chat_template.json (content items may be audio/image/video
 * placeholders) and plain Qwen3's (tokenizer_config.json's chat_template, text only). Both strip <think> blocks from
 * assistant turns before the last user query and accept enable_thinking=false for the generation prompt. Tools,
 * tool_calls and reasoning_content are not modelled (omni_message has none of them).
 *
 * How an omni_message maps onto the template's message: a message whose items are all text is passed as a string
 * (the texts concatenated), any other as a list of typed parts ({"type": "audio"}, {"type": "image"},
 * {"type": "video"}, {"type": "text", "text": ...}) — exactly what the reference renders in tests/ use. */
#ifndef OMNI_CHAT_H
#define OMNI_CHAT_H

#include "omni.h"
#include "util.h"

typedef enum {
    CHAT_QWEN3_OMNI = 0, /* Qwen/Qwen3-Omni-30B-A3B-{Instruct,Thinking} chat_template.json */
    CHAT_QWEN3 = 1       /* Qwen/Qwen3-* tokenizer_config.json chat_template (text only) */
} chat_kind;

typedef struct {
    chat_kind kind;
    int32_t enable_thinking; /* -1: not passed to the template (its default); 0: false; 1: true */
} chat_style;

chat_style chat_style_default(void); /* Qwen3-Omni, enable_thinking not passed */

/* Picks the style from a checkpoint's template text: chat_template.json's content, tokenizer_config.json's content,
 * or the bare template. The audio placeholder (or an 'audio_url' test) means Qwen3-Omni; otherwise a ChatML template
 * handling </think> is Qwen3; anything else (NULL, empty, unknown) gets the default. enable_thinking is left at -1. */
chat_style chat_style_detect(const char *template_text);

/* Renders n messages; add_generation_prompt appends "<|im_start|>assistant\n" (plus an empty think block when
 * enable_thinking is 0). Returns a malloc'd NUL-terminated string, or NULL with e set (no messages, a message
 * without a role, media items under the text-only Qwen3 template, out of memory). */
char *chat_render(const chat_style *st, const omni_message *msgs, int n, int add_generation_prompt, omni_err *e);

#endif
