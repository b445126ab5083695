-- @include "prologue"
fail("unavailable", "queue_peek is not implemented yet")
