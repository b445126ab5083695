-- @include "prologue"
fail("unavailable", "queue_configure is not implemented yet")
