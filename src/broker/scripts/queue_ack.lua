-- @include "prologue"
fail("unavailable", "queue_ack is not implemented yet")
