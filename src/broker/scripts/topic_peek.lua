-- @include "prologue"
fail("unavailable", "topic_peek is not implemented yet")
