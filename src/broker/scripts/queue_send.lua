-- @include "prologue"
fail("unavailable", "queue_send is not implemented yet")
