-- @include "prologue"
fail("unavailable", "queue_receive is not implemented yet")
