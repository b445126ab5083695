-- @include "prologue"
fail("unavailable", "queue_redrive is not implemented yet")
