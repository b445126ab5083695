-- @include "prologue"
fail("unavailable", "queue_request is not implemented yet")
