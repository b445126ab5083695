-- @include "prologue"
fail("unavailable", "topic_receive is not implemented yet")
