-- @include "prologue"
fail("unavailable", "topic_ack is not implemented yet")
