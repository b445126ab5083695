-- @include "prologue"
fail("unavailable", "topic_redrive is not implemented yet")
