-- @include "prologue"
fail("unavailable", "topic_configure is not implemented yet")
