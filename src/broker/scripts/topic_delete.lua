-- @include "prologue"
fail("unavailable", "topic_delete is not implemented yet")
