-- @include "prologue"
fail("unavailable", "queue_sweep is not implemented yet")
