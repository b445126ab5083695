-- @include "prologue"
fail("unavailable", "queue_reply is not implemented yet")
