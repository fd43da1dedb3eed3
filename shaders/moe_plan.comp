#version 460
// moe_plan.comp — groups the n·k (token, slot) entries of a prefill by expert, for the grouped expert matmuls.
// One workgroup: count entries per expert (the atomic's return value is the entry's rank within its expert), an
// exclusive prefix sum gives each expert's first sorted slot, then every entry learns its sorted position.
// Output (int32, at plan): tok[n·k] (sorted position -> token), pos[n·k] (entry -> sorted position, -1 if its
// expert id is out of range), then n_tiles and n_tiles × (expert, first sorted position, count <= tile): the tiles
// in expert order, each expert's entries cut into runs of `tile`, the list cut after max_tiles.
// The order of entries within an expert depends on timing, but every output row is computed independently and
// moe_combine.comp sums the slots in fixed order, so results do not.
//
// Speed (one workgroup, so latency is all that counts): a thread's first B entries are loaded in one unrolled batch
// (B independent loads: one global round trip instead of one per entry) and their ids and ranks stay in registers
// until the final stores, so nothing is read back from memory. Entries beyond B·WG (larger chunks than the model's)
// go round in further batches, their ranks parked in pos and re-read at the end. The prefix sums over experts of
// both entries and tiles are one shared-memory scan (Hillis–Steele, log2 of the experts' threads steps), and every
// thread writes the tiles of its own experts, where one thread used to walk all experts and tiles serially.
#define PC_PLAN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 1024;

#define PLAN_IDS BufI32
#define PLAN_MAX_EXP 1024u
#include "plan.glsl"

void main() { plan_build(pc.ids, pc.plan, pc.n, pc.k, pc.n_exp, pc.tile, pc.max_tiles); }
