-- @include "prologue"
fail("unavailable", "queue_stats is not implemented yet")
