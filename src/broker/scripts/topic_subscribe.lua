-- @include "prologue"
fail("unavailable", "topic_subscribe is not implemented yet")
