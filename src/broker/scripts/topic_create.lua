-- @include "prologue"
fail("unavailable", "topic_create is not implemented yet")
