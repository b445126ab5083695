-- @include "prologue"
fail("unavailable", "queue_visibility is not implemented yet")
