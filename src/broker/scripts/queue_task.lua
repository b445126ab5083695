-- @include "prologue"
fail("unavailable", "queue_task is not implemented yet")
