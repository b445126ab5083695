-- @include "prologue"
fail("unavailable", "topic_seek is not implemented yet")
