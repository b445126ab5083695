-- @include "prologue"
fail("unavailable", "queue_nack is not implemented yet")
