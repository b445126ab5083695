-- @include "prologue"
fail("unavailable", "topic_stats is not implemented yet")
