-- @include "prologue"
fail("unavailable", "queue_create is not implemented yet")
