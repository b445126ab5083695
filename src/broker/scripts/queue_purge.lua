-- @include "prologue"
fail("unavailable", "queue_purge is not implemented yet")
