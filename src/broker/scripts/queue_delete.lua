-- @include "prologue"
fail("unavailable", "queue_delete is not implemented yet")
