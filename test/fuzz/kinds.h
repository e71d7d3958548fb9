/*
 * The channel kinds of src/channel_kinds.c (herald_channel_kind()) and
 * their transports, without the renderers: for the harnesses that need the
 * lookup but not the formats.
 */
#define HERALD_KINDS_WITHOUT_RENDERERS
#include "../../src/channel_kinds.c"
